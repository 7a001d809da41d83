"""TensorDataset, DataLoader and the Fashion-MNIST CSV loader."""
import gzip
import math

import numpy as np
import pytest

from graphnet.data import DataLoader, TensorDataset, load_fashion_mnist_csv
from graphnet.errors import FormatError, InputError
from graphnet.module import manual_seed


def dataset(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return TensorDataset(x, y)


# --- TensorDataset -------------------------------------------------------------------------------------------

def test_tensor_dataset_indexing():
    ds = dataset(5)
    assert len(ds) == 5
    x, y = ds[2]
    np.testing.assert_array_equal(x, [6, 7, 8])
    assert y == 2
    xb, yb = ds[np.array([4, 0])]
    assert xb.shape == (2, 3)
    np.testing.assert_array_equal(yb, [4, 0])


def test_tensor_dataset_errors():
    with pytest.raises(InputError, match="same first dimension"):
        TensorDataset(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(InputError, match="at least one array"):
        TensorDataset()
    with pytest.raises(InputError, match="scalar"):
        TensorDataset(np.float32(1.0))


# --- DataLoader ----------------------------------------------------------------------------------------------

def test_batches_in_order():
    batches = list(DataLoader(dataset(10), batch_size=4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), np.arange(10))
    x0, _ = batches[0]
    assert x0.dtype == np.float32 and x0.shape == (4, 3)


def test_drop_last():
    batches = list(DataLoader(dataset(10), batch_size=4, drop_last=True))
    assert [len(y) for _, y in batches] == [4, 4]


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_len_counts_batches(n, batch_size, drop_last, shuffle):
    loader = DataLoader(dataset(n), batch_size=batch_size, drop_last=drop_last, shuffle=shuffle, seed=0)
    expected = n // batch_size if drop_last else math.ceil(n / batch_size)     # torch's rule
    assert len(loader) == expected == len(list(loader))


def test_shuffle_is_a_permutation_per_epoch():
    loader = DataLoader(dataset(20), batch_size=6, shuffle=True, seed=1)
    epochs = [np.concatenate([y for _, y in loader]) for _ in range(3)]
    for e in epochs:
        np.testing.assert_array_equal(np.sort(e), np.arange(20))
    assert not np.array_equal(epochs[0], epochs[1])          # a new order each epoch
    assert not np.array_equal(epochs[0], np.arange(20))
    x, y = next(iter(loader))
    np.testing.assert_array_equal(x[:, 0], 3 * y)             # rows stay together


def test_shuffle_drop_last_uses_whole_batches():
    loader = DataLoader(dataset(10), batch_size=3, shuffle=True, drop_last=True, seed=2)
    ys = [y for _, y in loader]
    assert [len(y) for y in ys] == [3, 3, 3]
    assert len(set(np.concatenate(ys).tolist())) == 9


def epoch_orders(loader, epochs=2):
    return [np.concatenate([y for _, y in loader]).tolist() for _ in range(epochs)]


def test_seed_makes_shuffling_reproducible():
    a = epoch_orders(DataLoader(dataset(16), batch_size=5, shuffle=True, seed=7))
    b = epoch_orders(DataLoader(dataset(16), batch_size=5, shuffle=True, seed=7))
    c = epoch_orders(DataLoader(dataset(16), batch_size=5, shuffle=True, seed=8))
    assert a == b and a != c


def test_manual_seed_makes_unseeded_shuffling_reproducible():
    manual_seed(123)
    a = epoch_orders(DataLoader(dataset(16), batch_size=5, shuffle=True))
    manual_seed(123)
    b = epoch_orders(DataLoader(dataset(16), batch_size=5, shuffle=True))
    manual_seed(124)
    c = epoch_orders(DataLoader(dataset(16), batch_size=5, shuffle=True))
    assert a == b and a != c


def test_batches_are_copies():
    ds = dataset(4)
    x, _ = next(iter(DataLoader(ds, batch_size=2)))
    x[...] = -1
    assert ds.arrays[0].min() == 0


def test_plain_array_dataset():
    batches = list(DataLoader(np.arange(5), batch_size=2))
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        DataLoader(dataset(), batch_size=batch_size)


def test_dataset_without_len():
    with pytest.raises(InputError, match="TensorDataset"):
        DataLoader(iter(range(3)))


# --- Fashion-MNIST CSV ---------------------------------------------------------------------------------------

HEADER = "label," + ",".join(f"pixel{i}" for i in range(1, 785))


def make_table(n=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    pixels = rng.integers(0, 256, (n, 784))
    pixels[0, :3] = [0, 255, 128]
    return labels, pixels


def csv_text(labels, pixels, newline="\n"):
    rows = [HEADER] + [",".join(map(str, [lab, *pix])) for lab, pix in zip(labels, pixels)]
    return newline.join(rows) + newline


def write(tmp_path, name, text, gz=False):
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_loads_and_centres(tmp_path, gz):
    labels, pixels = make_table()
    path = write(tmp_path, "train.csv", csv_text(labels, pixels), gz)     # no .gz suffix: told by magic bytes
    x, y, mean = load_fashion_mnist_csv(path)
    assert x.dtype == np.float32 and x.shape == (6, 784)
    assert y.dtype == np.int64 and y.tolist() == labels.tolist()
    assert mean.dtype == np.float32 and mean.shape == (784,)
    scaled = pixels.astype(np.float32) / 255
    np.testing.assert_allclose(mean, scaled.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(x, scaled - mean, atol=1e-6)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)


def test_test_set_uses_training_mean(tmp_path):
    labels, pixels = make_table(seed=0)
    _, _, mean = load_fashion_mnist_csv(write(tmp_path, "train.csv", csv_text(labels, pixels)))
    labels2, pixels2 = make_table(n=3, seed=1)
    x2, y2, mean2 = load_fashion_mnist_csv(write(tmp_path, "test.csv.gz", csv_text(labels2, pixels2), gz=True),
                                           mean=mean)
    assert mean2 is mean or np.array_equal(mean2, mean)
    np.testing.assert_allclose(x2, pixels2.astype(np.float32) / 255 - mean, atol=1e-6)
    x3, _, _ = load_fashion_mnist_csv(write(tmp_path, "t.csv", csv_text(labels2, pixels2)), mean=0.5)
    np.testing.assert_allclose(x3, pixels2.astype(np.float32) / 255 - 0.5, atol=1e-6)


def test_windows_newlines_and_trailing_blank_line(tmp_path):
    labels, pixels = make_table(n=2)
    x, y, _ = load_fashion_mnist_csv(write(tmp_path, "w.csv", csv_text(labels, pixels, "\r\n") + "\r\n"))
    assert x.shape == (2, 784) and y.tolist() == labels.tolist()


def test_bad_mean_shape(tmp_path):
    labels, pixels = make_table(n=2)
    with pytest.raises(InputError, match="mean must be"):
        load_fashion_mnist_csv(write(tmp_path, "m.csv", csv_text(labels, pixels)), mean=np.zeros(10))


def with_row(row_index, new_row):
    """The table's text with data row ``row_index`` (0-based; file line row_index + 2) replaced."""
    labels, pixels = make_table()
    lines = csv_text(labels, pixels).splitlines()
    lines[row_index + 1] = new_row(lines[row_index + 1])
    return "\n".join(lines) + "\n"


BAD_FILES = [
    ("header", lambda: "a,b,c\n1,2,3\n", "line 1: expected the header"),
    ("no-header", lambda: csv_text(*make_table()).split("\n", 1)[1], "line 1: expected the header"),
    ("empty", lambda: "", "line 1: the file is empty"),
    ("header-only", lambda: HEADER + "\n", "no images after the header"),
    ("short-row", lambda: with_row(1, lambda s: s.rsplit(",", 1)[0]), "line 3: expected 785 values"),
    ("long-row", lambda: with_row(2, lambda s: s + ",0"), "line 4: expected 785 values"),
    ("not-int", lambda: with_row(3, lambda s: s.replace(",", ",x", 1)), "line 5: column 2: 'x13' is not an integer"),
    ("float", lambda: with_row(0, lambda s: s + ".5"), "line 2: column 785: '.*' is not an integer"),
    ("label", lambda: with_row(4, lambda s: "10" + s[1:]), "line 6: label 10 is not a class 0..9"),
    ("pixel-high", lambda: with_row(1, lambda s: s.rsplit(",", 1)[0] + ",256"),
     "line 3: column 785: pixel value 256 is outside 0..255"),
    ("pixel-neg", lambda: with_row(5, lambda s: s.replace(",", ",-", 1)), "line 7: column 2: pixel value -"),
    ("binary", lambda: b"\xff\xfe\x00garbage", "cannot be read|expected the header"),
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case,text,match", BAD_FILES, ids=[c for c, _, _ in BAD_FILES])
def test_bad_files(tmp_path, gz, case, text, match):
    path = write(tmp_path, f"bad_{case}.csv", text(), gz)
    with pytest.raises(FormatError, match=f"bad_{case}.csv.*{match}"):
        load_fashion_mnist_csv(path)


def test_truncated_gzip(tmp_path):
    labels, pixels = make_table()
    data = gzip.compress(csv_text(labels, pixels).encode())
    path = write(tmp_path, "cut.csv.gz", data[: len(data) // 2])
    with pytest.raises(FormatError, match="cut.csv.gz"):
        load_fashion_mnist_csv(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist_csv(tmp_path / "nope.csv")
