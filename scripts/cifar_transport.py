"""Carry a CIFAR-10 copy to a machine that a 177 MB folder cannot reach (a lent GPU machine
takes at most 64 MiB of files per call), and rebuild it there in torchvision's layout.

    python scripts/cifar_transport.py pack   <data root> <pack folder>   # here: ~25 MB
    python scripts/cifar_transport.py unpack <pack folder> <data root>   # there

The project's CIFAR-10 copy is itself decoded from a baseline JPEG export (see the data
README); `pack` re-encodes its pixels as JPEG at quality 98 without chroma subsampling, which
changes a pixel value by 0.45 levels of 255 on average (99.9% within 4, none by more than 11;
measured on data_batch_1; quality 75 with 4:2:0, the export's own settings, is 3x smaller but
changes some values by 100). `pack` prints how many values survive exactly and the largest
change; the unpacked copy is what runs on the other machine train on (they record
`verified: false`, like every run on the shared copy). Each batch of 10,000 images is one
JPEG mosaic of 100 x 100 tiles: tiles of 32 px align with JPEG's 8 px blocks and 16 px
chroma MCUs, so a tile is coded exactly as the image alone would be, without 10,000 headers.
Labels, file names and batches.meta travel as they are.
"""
from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
FOLDER = "cifar-10-batches-py"
TILES = 100  # tiles per side of a mosaic: 100 x 100 = one batch
QUALITY, SUBSAMPLING = 98, 0  # 0 = 4:4:4 in Pillow: no chroma subsampling


def _mosaic(data: np.ndarray) -> np.ndarray:
    """(N, 3072) CIFAR rows -> one (100*32, 100*32, 3) image, row-major tiles."""
    img = data.reshape(TILES, TILES, 3, 32, 32).transpose(0, 3, 1, 4, 2)  # tile-row, y, tile-col, x, c
    return img.reshape(TILES * 32, TILES * 32, 3)


def _rows(mosaic: np.ndarray) -> np.ndarray:
    img = mosaic.reshape(TILES, 32, TILES, 32, 3).transpose(0, 2, 4, 1, 3)  # tile-row, tile-col, c, y, x
    return img.reshape(TILES * TILES, 3 * 32 * 32)


def pack(root: Path, out: Path) -> None:
    src = root / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    meta = {"batches.meta": (src / "batches.meta").read_bytes(), "batches": {}}
    exact = total = 0
    worst = 0
    for name in BATCHES:
        with open(src / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        if data.shape != (TILES * TILES, 3072):
            raise SystemExit(f"{src / name}: expected {TILES * TILES} images of 3072 bytes, got {data.shape}")
        buf = io.BytesIO()
        Image.fromarray(_mosaic(data)).save(buf, "JPEG", quality=QUALITY, subsampling=SUBSAMPLING)
        (out / f"{name}.jpg").write_bytes(buf.getvalue())
        back = _rows(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        diff = np.abs(back.astype(np.int16) - data.astype(np.int16))
        exact += int((diff == 0).sum())
        total += diff.size
        worst = max(worst, int(diff.max()))
        # str keys, as torchvision reads them (the original files, pickled by Python 2,
        # load with str keys under encoding="latin1")
        meta["batches"][name] = {k.decode("latin1"): v for k, v in d.items() if k != b"data"}
        print(f"{name}: {len(buf.getvalue()) / 1e6:.1f} MB, mean |change| {diff.mean():.3f} levels, max {diff.max()}")
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    print(f"packed {len(BATCHES)} batches into {out}: {100 * exact / total:.1f}% of pixel values unchanged, "
          f"largest change {worst} levels of 255")


def unpack(pack_dir: Path, root: Path) -> None:
    dest = root / FOLDER
    dest.mkdir(parents=True, exist_ok=True)
    with open(pack_dir / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    (dest / "batches.meta").write_bytes(meta["batches.meta"])
    for name in BATCHES:
        rows = _rows(np.asarray(Image.open(pack_dir / f"{name}.jpg").convert("RGB")))
        with open(dest / name, "wb") as f:
            pickle.dump({**meta["batches"][name], "data": rows}, f)
    print(f"unpacked {len(BATCHES)} batches into {dest}")


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in ("pack", "unpack"):
        raise SystemExit(__doc__.split("\n\n")[1])
    (pack if argv[0] == "pack" else unpack)(Path(argv[1]), Path(argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
