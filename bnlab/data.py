"""Datasets as normalized tensors on the training device; batches are index lookups.

MNIST and CIFAR-10 come through torchvision's dataset classes (which download them on a
machine with network when `data.download` is true). They are converted once to float
tensors on the device; a validation split is held out of the training set with a fixed
seed shared by every run, so arms and seeds are selected on the same images.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bnlab.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    train_size: int
    test_size: int
    shape: tuple[int, int, int]
    num_classes: int
    files: tuple[str, ...]  # relative to data.root; all must exist to load without download


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(60000, 10000, (1, 28, 28), 10, tuple(
        f"MNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))),
    "cifar10": DatasetSpec(50000, 10000, (3, 32, 32), 10, tuple(
        f"cifar-10-batches-py/{f}" for f in
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"))),
}

# MD5 of the canonical uncompressed MNIST files. torchvision checks only the .gz downloads,
# so bnlab checks what it actually reads.
MNIST_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def _cifar10_unverified():
    """torchvision's CIFAR10 loader with the MD5 check replaced by an existence check.

    Used only with data.verify=false, for copies (like the project's JPEG rebuild) whose
    pixels differ from the original files; the run records that it was not verified.
    """
    import torchvision

    class CIFAR10Unverified(torchvision.datasets.CIFAR10):
        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            return all((base / name).is_file() for name, _ in self.train_list + self.test_list)

    return CIFAR10Unverified


@dataclass
class Splits:
    """Normalized float images (N, C, H, W) and int64 labels, all on one device."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    info: dict = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def train_pool_size(d) -> int:
    """How many training images a run will see, from the config alone (for validation)."""
    spec = DATASETS[d.name]
    pool = spec.train_size - d.val_size
    return pool if d.train_subset is None else min(pool, d.train_subset)


def _missing_files(root: Path, spec: DatasetSpec) -> list[str]:
    return [f for f in spec.files if not (root / f).is_file()]


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


FIX = "set BNLAB_DATA or data.root to a folder that holds it"

# The byte size of each uncompressed MNIST file (an IDX header, then one byte per pixel or
# label): a truncated or padded copy is named before it is read, whether or not its
# checksum is verified (torchvision would fail on it with "shape '[60000, 28, 28]' is invalid").
MNIST_SIZES = {
    "MNIST/raw/train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
    "MNIST/raw/train-labels-idx1-ubyte": 8 + 60000,
    "MNIST/raw/t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
    "MNIST/raw/t10k-labels-idx1-ubyte": 8 + 10000,
}


def _check_sizes(d, root: Path) -> None:
    """DataError naming the first MNIST file whose size is not the expected one."""
    if d.name != "mnist":
        return
    for f, size in MNIST_SIZES.items():
        actual = (root / f).stat().st_size
        if actual != size:
            raise DataError("data.root", f"{root / f} has {actual:,} bytes, not the {size:,} of the MNIST file "
                            f"(truncated or not MNIST); replace it, or {FIX}")


def check_data_present(d) -> bool:
    """True when the files are there; False when they are missing but may be downloaded;
    DataError when they are missing and download is off."""
    root = Path(str(d.root)).expanduser()
    missing = _missing_files(root, DATASETS[d.name])
    if missing and not d.download:
        raise DataError("data.root", f"{d.name} not found in {root} (missing {missing[0]}); "
                        f"{FIX}, or set data.download=true to fetch it")
    if not missing:
        _check_sizes(d, root)
    return not missing


def ensure_present(d) -> None:
    """Make dataset `d.name` available under `d.root`: there already, or downloaded now."""
    if check_data_present(d):
        return
    root = Path(str(d.root)).expanduser()
    spec = DATASETS[d.name]
    log.info("downloading %s into %s", d.name, root)
    # Remove what a failed download leaves behind, but only folders this call created.
    folder = root / spec.files[0].split("/")[0]
    created = [p for p in (*reversed(folder.parents), folder) if not p.exists()][:1]
    try:
        import torchvision

        root.mkdir(parents=True, exist_ok=True)
        cls = torchvision.datasets.MNIST if d.name == "mnist" else torchvision.datasets.CIFAR10
        for train in (True, False):
            cls(str(root), train=train, download=True)
        missing = _missing_files(root, spec)
        if missing:
            raise RuntimeError(f"{missing[0]} still missing afterwards")
    except Exception as exc:  # network, permissions, disk: all mean "not available"
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise DataError("data.download", f"downloading {d.name} into {root} failed ({reason}); "
                        f"{FIX}") from None


def _read_raw(d, root: Path) -> tuple[torch.Tensor, ...]:
    """uint8 images (N, C, H, W) and int64 labels for train and test, as torchvision reads them."""
    import torchvision  # imported here: it takes a second, and only data loading needs it

    if d.name == "mnist":
        _check_sizes(d, root)
        if d.verify:
            bad = [f for f, md5 in MNIST_MD5.items() if _md5(root / f) != md5]
            if bad:
                raise DataError("data.verify", f"{root / bad[0]} does not match the canonical "
                                "MNIST checksum; this copy loads only with data.verify=false")
        sets = [torchvision.datasets.MNIST(str(root), train=t, download=False) for t in (True, False)]
        return tuple(x for s in sets for x in (s.data.unsqueeze(1), s.targets.long()))
    if d.verify:
        try:
            sets = [torchvision.datasets.CIFAR10(str(root), train=t, download=False) for t in (True, False)]
        except RuntimeError:
            raise DataError("data.verify", f"the CIFAR-10 files in {root} do not match torchvision's "
                            "checksums; this copy loads only with data.verify=false") from None
    else:
        cls = _cifar10_unverified()
        try:
            sets = [cls(str(root), train=t, download=False) for t in (True, False)]
        except Exception as exc:  # a truncated or foreign batch file: any unpickling error
            raise DataError("data.root", f"the CIFAR-10 files in {root / 'cifar-10-batches-py'} cannot be read "
                            f"({type(exc).__name__}: {str(exc)[:120]}); replace them, or {FIX}") from None
    return tuple(x for s in sets for x in (torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                                           torch.tensor(s.targets, dtype=torch.long)))


def split_indices(n: int, val_size: int, split_seed: int, train_subset: int | None):
    """Fixed train/val index split (and optional deterministic training subset)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    return train_idx.sort().values, val_idx.sort().values


# The last dataset loaded in this process. Sweep launchers reuse worker processes for many
# jobs; loading, checking and normalizing MNIST again for each job costs about a second.
# Training never writes into these tensors (augmentation makes new ones).
_last_loaded: dict = {}


def load_data(d, device: torch.device) -> Splits:
    """Load dataset `d.name` from `d.root` (downloading if allowed) onto `device`."""
    key = (d.name, str(d.root), d.verify, d.val_size, d.split_seed, d.train_subset, str(device))
    if key in _last_loaded:
        cached = _last_loaded[key]
        return Splits(**{**cached.__dict__, "info": dict(cached.info)})
    splits = _load(d, device)
    _last_loaded.clear()
    _last_loaded[key] = splits
    return splits


def _load(d, device: torch.device) -> Splits:
    spec = DATASETS[d.name]
    root = Path(str(d.root)).expanduser()
    ensure_present(d)
    x_train, y_train, x_test, y_test = _read_raw(d, root)
    train_idx, val_idx = split_indices(len(x_train), d.val_size, d.split_seed, d.train_subset)

    # Normalize with the per-channel statistics of the images the run trains on.
    train_u8 = x_train[train_idx]
    as_float = train_u8.float().div_(255)
    mean = as_float.mean(dim=(0, 2, 3))
    std = as_float.std(dim=(0, 2, 3))
    del as_float

    def to_device(x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.to(device).float().div_(255)
        return x.sub_(mean.to(device)[None, :, None, None]).div_(std.to(device)[None, :, None, None])

    splits = Splits(
        train_x=to_device(train_u8), train_y=y_train[train_idx].to(device),
        val_x=to_device(x_train[val_idx]), val_y=y_train[val_idx].to(device),
        test_x=to_device(x_test), test_y=y_test.to(device),
        num_classes=spec.num_classes,
    )
    splits.info = {
        "name": d.name, "root": str(root), "verified": bool(d.verify),
        "train": len(train_idx), "val": len(val_idx), "test": len(x_test),
        "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
    }
    return splits


class BatchSampler:
    """Random mini-batches without replacement within an epoch, drawn on the device.

    Indices come from a seeded generator, so a run's batch order is a function of its seed.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.batch_size, self.device = n, batch_size, device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self._perm = torch.empty(0, dtype=torch.long, device=device)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > len(self._perm):
            # drop the epoch's ragged tail, as DataLoader(drop_last=True) would
            self._perm = torch.randperm(self.n, generator=self.gen, device=self.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        """Where the sampler is: its epoch's permutation, the position in it, its generator."""
        return {"perm": self._perm.cpu(), "pos": self._pos, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._perm = state["perm"].to(self.device)
        self._pos = state["pos"]
        self.gen.set_state(state["gen"])


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding `pad`) and horizontal flip of a whole batch at once."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)
