"""Real MNIST (and CIFAR-10) from $BNLAB_DATA: shapes, label counts, splits, checksums."""
import shutil

import pytest
import torch

from bnlab.data import BatchSampler, augment_batch, load_data, split_indices
from bnlab.errors import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CPU = torch.device("cpu")


def test_mnist_loads_as_normalized_device_tensors(mnist_root, cfg_factory):
    d = load_data(cfg_factory(f"data.root={mnist_root}").data, CPU)
    assert d.train_x.shape == (55000, 1, 28, 28) and d.train_x.dtype == torch.float32
    assert d.val_x.shape == (5000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_y.dtype == torch.long and d.num_classes == 10
    # label counts: train + val together are MNIST's training set, the test set is exact
    counts = torch.bincount(torch.cat([d.train_y, d.val_y]), minlength=10).tolist()
    assert counts == MNIST_TRAIN_COUNTS
    assert torch.bincount(d.test_y, minlength=10).tolist() == MNIST_TEST_COUNTS
    # normalized with the statistics of the training split
    assert abs(d.train_x.mean().item()) < 1e-3 and abs(d.train_x.std().item() - 1) < 1e-3
    assert abs(d.info["mean"][0] - 0.1307) < 1e-3 and abs(d.info["std"][0] - 0.3081) < 1e-3
    assert d.info["verified"] is True


def test_split_is_fixed_disjoint_and_subset_is_deterministic():
    tr, va = split_indices(60000, 5000, 0, None)
    assert len(tr) == 55000 and len(va) == 5000
    assert len(set(tr.tolist()) & set(va.tolist())) == 0
    tr2, va2 = split_indices(60000, 5000, 0, None)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    sub, va3 = split_indices(60000, 5000, 0, 1000)
    assert torch.equal(va3, va) and len(sub) == 1000 and set(sub.tolist()) <= set(tr.tolist())
    assert torch.equal(sub, split_indices(60000, 5000, 0, 1000)[0])


def test_train_subset_and_no_validation(mnist_root, cfg_factory):
    d = load_data(cfg_factory(f"data.root={mnist_root}", "data.train_subset=600", "data.val_size=0").data, CPU)
    assert d.train_x.shape[0] == 600 and d.val_x.shape[0] == 0 and d.test_x.shape[0] == 10000


def test_missing_data_with_download_off_names_the_path(tmp_path, cfg_factory):
    cfg = cfg_factory(f"data.root={tmp_path / 'nowhere'}", "data.download=false")
    with pytest.raises(DataError) as err:
        load_data(cfg.data, CPU)
    msg = str(err.value)
    assert msg.startswith("data.root:") and str(tmp_path / "nowhere") in msg and "BNLAB_DATA" in msg
    assert "\n" not in msg and not (tmp_path / "nowhere").exists()


def _mnist_copy_with_one_changed_byte(src, dst):
    (dst / "MNIST" / "raw").mkdir(parents=True)
    for f in (src / "MNIST" / "raw").iterdir():
        if f.name.endswith("-ubyte"):
            (dst / "MNIST" / "raw" / f.name).symlink_to(f)
    labels = dst / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.unlink()
    data = bytearray((src / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes())
    data[-1] = (data[-1] + 1) % 10
    labels.write_bytes(bytes(data))


def test_mnist_copy_with_other_checksum_loads_only_unverified(mnist_root, tmp_path, cfg_factory):
    _mnist_copy_with_one_changed_byte(mnist_root, tmp_path)
    with pytest.raises(DataError) as err:
        load_data(cfg_factory(f"data.root={tmp_path}").data, CPU)
    assert str(err.value).startswith("data.verify:") and "data.verify=false" in str(err.value)
    d = load_data(cfg_factory(f"data.root={tmp_path}", "data.verify=false").data, CPU)
    assert d.info["verified"] is False and d.test_y.shape == (10000,)


def test_cifar_rebuilt_copy_needs_verify_false(cifar_root, cfg_factory):
    with pytest.raises(DataError) as err:
        load_data(cfg_factory("data=cifar10", f"data.root={cifar_root}").data, CPU)
    assert str(err.value).startswith("data.verify:")
    d = load_data(cfg_factory("data=cifar10", f"data.root={cifar_root}", "data.verify=false").data, CPU)
    assert d.train_x.shape == (45000, 3, 32, 32) and d.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert torch.allclose(d.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert d.info["verified"] is False


def test_batch_sampler_covers_an_epoch_without_repeats_and_is_seeded():
    s = BatchSampler(100, 10, seed=3, device=CPU)
    epoch = torch.cat([s.next() for _ in range(10)])
    assert sorted(epoch.tolist()) == list(range(100))
    again = BatchSampler(100, 10, seed=3, device=CPU)
    assert torch.equal(torch.cat([again.next() for _ in range(10)]), epoch)
    other = BatchSampler(100, 10, seed=4, device=CPU)
    assert not torch.equal(torch.cat([other.next() for _ in range(10)]), epoch)


def test_augmentation_is_a_shift_and_flip_of_each_image():
    x = torch.zeros(64, 3, 32, 32)
    x[:, :, 16, 10] = 1.0  # one bright pixel per image
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=4)
    assert out.shape == x.shape
    flipped = 0
    for img in out:
        ys, xs = torch.nonzero(img[0], as_tuple=True)
        if len(ys) == 0:
            continue  # shifted out of view is impossible here (pad 4, pixel well inside)
        assert len(ys) == 1 and abs(ys.item() - 16) <= 4
        col = xs.item()
        near_orig, near_flip = abs(col - 10) <= 4, abs(col - 21) <= 4
        assert near_orig or near_flip
        flipped += near_flip
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])  # channels move together
    assert all(len(torch.nonzero(img[0])) == 1 for img in out)
    assert 10 < flipped < 54  # about half flipped
    again = augment_batch(x, torch.Generator().manual_seed(0), pad=4)
    assert torch.equal(out, again)
