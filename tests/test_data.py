"""polarkit.data against the real shared/data files: counts from MANIFEST.md, schemas,
seeded sampling, clear errors, and the hub fallback (with a fake `datasets`, no network)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polarkit.data as D
from polarkit import environment

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared data at {SHARED}")
KDT = "kdt_aivengers/"


@pytest.fixture(autouse=True)
def shared_data(monkeypatch):
    monkeypatch.setenv("POLARKIT_DATA", str(SHARED))


@pytest.fixture
def no_root(monkeypatch, tmp_path):
    """No POLARKIT_DATA and no ../shared/data: loaders must use the hub fallback."""
    monkeypatch.delenv("POLARKIT_DATA")
    monkeypatch.setattr(environment, "DEFAULT_DATA", tmp_path / "absent")


def fake_datasets(monkeypatch, load_dataset):
    """Install a stand-in `datasets` module so the fallback path runs without the network."""
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


# --- counts and schemas (MANIFEST "Current contents at a glance") ---------------------------

STS = ["sentence1", "sentence2", "score"]


@pytest.mark.parametrize(
    "loader, split, rows, columns",
    [
        (D.load_cola, "train", 8_551, ["text", "label"]),
        (D.load_cola, "validation", 1_043, ["text", "label"]),
        (D.load_klue_sts, "train", 11_668, [*STS, "binary"]),
        (D.load_klue_sts, "dev", 519, [*STS, "source", "binary"]),
        (D.load_korsts, "train", 5_749, [*STS, "source", "binary"]),
        (D.load_korsts, "dev", 1_500, [*STS, "source", "binary"]),
        (D.load_unsmile, "train", 15_005, ["text", *D.UNSMILE_LABELS]),
        (D.load_unsmile, "valid", 3_737, ["text", *D.UNSMILE_LABELS]),
        (D.load_nikl, "train", 3_001, ["id", "text", "annotations"]),
        (D.load_nikl, "dev", 2_794, ["id", "text", "annotations"]),
        (D.load_ksc, "train", 5_044, ["text", "aspect", "polarity"]),
        (D.load_ksc, "test", 1_249, ["text", "aspect", "polarity"]),
    ],
)
def test_split_rows_and_columns(loader, split, rows, columns):
    df = loader(split)
    assert len(df) == rows
    assert list(df.columns) == columns
    assert not df.isna().any().any()


def test_mnist_shapes_and_first_labels():
    x, y = D.load_mnist("train")
    assert x.shape == (60_000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert abs(x.mean() / 255 - 0.1307) < 1e-3  # the canonical normalisation constant
    xt, yt = D.load_mnist("test")
    assert xt.shape == (10_000, 28, 28) and yt[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_mnist_idx_magic_is_checked():
    src = SHARED / "mnist/t10k-labels-idx1-ubyte.gz"
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        D.vision.read_idx(src, D.vision.IDX_IMAGES)


def test_sts_labels():
    dev = D.load_klue_sts("dev")
    assert dev["binary"].sum() == 220 and dev["score"].between(0, 5).all()
    assert dev["source"].nunique() == 6
    assert D.load_klue_sts("train")["binary"].sum() == 5_602


def test_nsmc_official_test_and_leak_free_train():
    test = D.load_nsmc("test", drop_empty=False)
    train = D.load_nsmc("train", drop_empty=False)
    assert len(test) == 50_000 and len(train) == D.reviews.NSMC_TRAIN_ROWS == 129_652
    assert not set(train["id"]) & set(test["id"])
    assert test["label"].value_counts().to_dict() == {1: 25_173, 0: 24_827}
    # default drop_empty=True removes the 3 empty reviews in each split
    assert len(D.load_nsmc("test")) == 49_997 and len(D.load_nsmc("train")) == 129_649
    assert (D.load_nsmc("test")["text"].str.strip() != "").all()


def test_unsmile_labels():
    assert len(D.UNSMILE_LABELS) == 10 and "개인지칭" not in D.UNSMILE_LABELS
    df = D.load_unsmile("valid")
    assert df[list(D.UNSMILE_LABELS)].sum().tolist() == [394, 334, 280, 426, 146, 260, 290, 134, 786, 935]


def test_nikl_annotations_are_category_polarity_pairs():
    assert len(set(D.NIKL_CATEGORIES)) == 25
    train, dev = D.load_nikl("train"), D.load_nikl("dev")
    pairs = [p for ann in train["annotations"] for p in ann]
    assert len(pairs) == 3_255 and all(len(p) == 2 for p in pairs)
    assert pd.Series([pol for _, pol in pairs]).value_counts().to_dict() == {
        "positive": 3_102,
        "neutral": 95,
        "negative": 58,
    }
    seen = {c for df in (train, dev) for ann in df["annotations"] for c, _ in ann}
    assert len(seen) == 23 and seen <= set(D.NIKL_CATEGORIES)


def test_ksc_text_is_reconstructed():
    df = D.load_ksc("train")
    assert not df["text"].str.contains("$T$", regex=False).any()
    assert all(a in t for a, t in zip(df["aspect"], df["text"]))
    assert set(df["aspect"]) == set(D.KSC_ASPECTS)
    assert df["polarity"].value_counts().to_dict() == {"positive": 2_498, "negative": 1_814, "neutral": 732}


# --- job descriptions ---------------------------------------------------------------------


def test_jd_sample_and_testsheet():
    sample = D.load_jd_sample()
    assert len(sample) == 41 and list(sample.columns) == list(D.JD_COLUMNS)
    sheet = D.load_testsheet()  # also checks url1/url2 against the sample rows
    assert len(sheet) == 38 and list(sheet.columns) == ["idx1", "idx2", "section", "label"]
    assert sheet["label"].value_counts().to_dict() == {1: 19, 0: 19}
    assert "우대사항" not in set(sheet["section"]) and set(sheet["section"]) <= set(D.JD_SECTIONS)
    assert (sheet["section"] == "우대조건").sum() == 6
    assert sheet[["idx1", "idx2"]].to_numpy().max() < len(sample)


def test_jd_corpus_unified_and_deduplicated():
    jumpit = D.load_jd_corpus(sources=("jumpit",))
    assert len(jumpit) == 2_724 and jumpit["출처 URL"].is_unique
    everything = D.load_jd_corpus()
    assert list(everything.columns) == [*D.JD_COLUMNS, "source"]
    assert everything["출처 URL"].is_unique
    assert everything["source"].value_counts().to_dict() == {
        "jumpit": 2_724,
        "jobplanet": 108,
        "dataengineer": 135 - 76,
    }
    with pytest.raises(ValueError, match="unknown JD source"):
        D.load_jd_corpus(sources=("wanted",))


def test_lectures_and_keywords():
    assert len(D.load_lectures("udemy")) == 5_735
    assert len(D.load_lectures("programmers")) == 126
    kw = D.load_keywords()
    assert {k: len(v) for k, v in kw.items()} == {"job_skills": 523, "udemy_skills": 234, "userwords": 638}
    assert all(w and w == w.strip() for words in kw.values() for w in words)
    assert len(D.load_skill_aliases("tech_stack")) == 505
    skill = D.load_skill_aliases("skill")  # first JSON object only; the pasted list is ignored
    assert len(skill) == 18 and skill["AWS"] == ["aws", "eks"]


def test_free_text_jds():
    for source, rows in (("wanted", 60), ("saramin", 386)):  # MANIFEST §6
        df = D.load_free_text_jds(source)
        assert len(df) == rows and list(df.columns) == [
            "회사명",
            "공고명",
            "직무내용",
            "document",
            "출처 URL",
            "source",
        ]
        assert (df["source"] == source).all() and (df["document"] == df["document"].str.strip()).all()
    with pytest.raises(ValueError, match="source must be one of"):
        D.load_free_text_jds("jobkorea")


# --- sampling -----------------------------------------------------------------------------


def test_sampling_is_seeded_and_without_replacement():
    a, b = D.load_nsmc("test", n=500, seed=1), D.load_nsmc("test", n=500, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 500 and a["id"].is_unique
    assert set(a["id"]) != set(D.load_nsmc("test", n=500, seed=2)["id"])
    assert len(D.load_cola("validation", n=10**6)) == 1_043  # too big -> whole split


def test_mnist_sampling_keeps_pairs():
    x, y = D.load_mnist("test", n=64, seed=3)
    x2, y2 = D.load_mnist("test", n=64, seed=3)
    assert x.shape == (64, 28, 28) and np.array_equal(x, x2) and np.array_equal(y, y2)
    full_x, full_y = D.load_mnist("test")
    idx = D._io.sample_index(10_000, 64, 3)
    assert np.array_equal(full_x[idx], x) and np.array_equal(full_y[idx], y)


def test_sample_is_the_loaders_draw_in_file_order():
    df = D.load_ksc("test")
    picked = D.sample(df, 50, seed=7)
    pd.testing.assert_frame_equal(picked, D.load_ksc("test", n=50, seed=7))  # one convention everywhere
    pos = D.sample(df.assign(pos=range(len(df))), 50, seed=7)["pos"]
    assert pos.is_monotonic_increasing and len(D.sample(df, None, 7)) == len(df)
    drawn = D.sample(df, 50, seed=7, keep_order=False)  # pandas' draw, in its order
    pd.testing.assert_frame_equal(drawn, df.sample(50, random_state=7).reset_index(drop=True))
    with pytest.raises(ValueError, match=r"frame X: missing column\(s\) \['gold'\]"):
        D.require_columns(df, ["text", "gold"], "frame X")


def test_train_val_split():
    df = D.load_ksc("test")
    train, val = D.train_val_split(df, frac=0.2, seed=0)
    assert len(val) == round(0.2 * len(df)) and len(train) + len(val) == len(df)
    again = D.train_val_split(df, frac=0.2, seed=0)[1]
    pd.testing.assert_frame_equal(val, again)


# --- errors and fallback ------------------------------------------------------------------


def test_missing_file_names_path_dataset_env_and_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        D.load_cola("train")
    msg = str(err.value)
    for part in (
        "'cola'",
        str(tmp_path / "cola/in_domain_train.tsv"),
        f"POLARKIT_DATA={str(tmp_path)!r}",
        "nyu-mll/glue",
    ):
        assert part in msg


def test_missing_column_is_a_clear_value_error(monkeypatch, tmp_path):
    for rel in ("jd/sampling_data.csv", "testsheet/test_case.csv"):
        (tmp_path / KDT / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED / KDT / rel, tmp_path / KDT / rel)
    broken = tmp_path / KDT / "testsheet/test_case.csv"
    text = broken.read_text(encoding="utf-8-sig")
    broken.write_text(text.replace("평가대상columns", "section_name", 1), encoding="utf-8")
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError) as err:
        D.load_testsheet()
    msg = str(err.value)
    assert str(broken) in msg and "['평가대상columns']" in msg and "section_name" in msg


def test_missing_json_key_is_a_clear_value_error(monkeypatch, tmp_path):
    rel = "korean_absa/nikluge_sa_2022/nikluge-sa-2022-dev.jsonl"
    (tmp_path / rel).parent.mkdir(parents=True)
    lines = (SHARED / rel).read_text(encoding="utf-8").splitlines()[:5]
    (tmp_path / rel).write_text("\n".join(lines).replace('"sentence_form"', '"sentence"'), encoding="utf-8")
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence_form'\]"):
        D.load_nikl("dev")


def test_hub_fallback_failure_names_local_file_and_hub_id(no_root, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    fake_datasets(monkeypatch, offline)
    with pytest.raises(FileNotFoundError) as err:
        D.load_cola("validation")
    msg = str(err.value)
    assert "cola/in_domain_dev.tsv" in msg and "'nyu-mll/glue', 'cola'" in msg
    with pytest.raises(FileNotFoundError, match="no Hugging Face hub fallback"):
        D.load_nikl("train")  # local-only dataset


def test_hub_fallback_is_normalised(no_root, monkeypatch):
    calls = []

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        frame = pd.DataFrame({"sentence": ["a b", "c"], "label": [1, 0], "idx": [0, 1]})
        return types.SimpleNamespace(to_pandas=lambda: frame)

    fake_datasets(monkeypatch, load_dataset)
    df = D.load_cola("validation")
    assert calls == [("nyu-mll/glue", "cola", "validation")]
    assert list(df.columns) == ["text", "label"] and df["text"].tolist() == ["a b", "c"]


def test_check_registry():
    table = D.check()
    assert list(table.columns) == ["dataset", "file", "present", "bytes", "problem"]
    assert set(table["dataset"]) == set(D.DATASETS) and table["present"].all()
    assert (table["bytes"] > 0).all() and (table["problem"] == "").all(), table[table["problem"] != ""]
    with pytest.raises(ValueError, match="unknown dataset"):
        D.check(["imagenet"])


def test_check_reports_absent_files(monkeypatch, tmp_path):
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    table = D.check("nsmc")
    assert len(table) == 2 and not table["present"].any() and (table["bytes"] == 0).all()
    assert (table["problem"] == "missing").all()


def test_data_root_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("POLARKIT_DATA")
    assert D.data_root() == SHARED  # ../shared/data next to the repo
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    assert D.data_root() == tmp_path


def test_import_is_light():
    code = (
        "import sys, polarkit.data; print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- unreadable files: the error names the file and the cause -----------------------------


def _copy_root(tmp_path, *rels):
    """A data root holding real copies of `rels` from the shared data."""
    for rel in rels:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED / rel, tmp_path / rel)
    return tmp_path


@pytest.mark.parametrize(
    "rel, load",
    [
        ("cola/in_domain_dev.tsv", lambda: D.load_cola("validation")),  # header=None: pandas alone reads 0 rows
        ("klue_sts/klue_sts_train.csv", lambda: D.load_klue_sts("train")),
        (f"{KDT}jd/sampling_data.csv", D.load_jd_sample),
        ("klue_sts/klue-sts-v1.1_dev.json", lambda: D.load_klue_sts("dev")),
        ("korean_absa/nikluge_sa_2022/nikluge-sa-2022-dev.jsonl", lambda: D.load_nikl("dev")),
    ],
)
def test_empty_file_names_file_and_cause(monkeypatch, tmp_path, rel, load):
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"")
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError) as err:
        load()
    assert str(err.value).startswith(f"{tmp_path / rel}: empty file (0 bytes)"), str(err.value)


@pytest.mark.parametrize(
    "rel, load",
    [
        ("klue_sts/klue_sts_train.csv", lambda: D.load_klue_sts("train")),
        ("nsmc/ratings_test.txt", lambda: D.load_nsmc("test")),
        ("korsts/sts-dev.tsv", lambda: D.load_korsts("dev")),
        ("klue_sts/klue-sts-v1.1_dev.json", lambda: D.load_klue_sts("dev")),
        ("korean_absa/food_review_ksc2021/food_review_Test.xml.seg", lambda: D.load_ksc("test")),
    ],
)
def test_non_utf8_file_names_file_offset_and_cause(monkeypatch, tmp_path, rel, load):
    _copy_root(tmp_path, rel)
    raw = (tmp_path / rel).read_bytes()
    at = raw.index(b"\n", len(raw) // 2) + 1  # a stray Latin-1 byte at the start of a line deep in the file
    (tmp_path / rel).write_bytes(raw[:at] + b"\xe9" + raw[at:])
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError) as err:
        load()
    line = raw[:at].count(b"\n") + 1
    assert str(err.value) == (
        f"{tmp_path / rel}: not utf-8 text: byte b'\\xe9' at offset {at:,} (line {line:,}); re-save it as UTF-8"
    )


def test_invalid_json_names_file_and_line(monkeypatch, tmp_path):
    rel = "korean_absa/nikluge_sa_2022/nikluge-sa-2022-dev.jsonl"
    _copy_root(tmp_path, rel)
    lines = (tmp_path / rel).read_text(encoding="utf-8").split("\n")
    lines[3] = lines[3][: len(lines[3]) // 2]  # a line cut short
    (tmp_path / rel).write_text("\n".join(lines), encoding="utf-8")
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=rf"{tmp_path / rel}: not valid JSON at line 4, column"):
        D.load_nikl("dev")


def test_check_parses_each_file_and_names_the_broken_ones(monkeypatch, tmp_path, capsys):
    from polarkit import cli

    rels = [*D.DATASETS["cola"].files, *D.DATASETS["mnist"].files]
    _copy_root(tmp_path, *rels)
    (tmp_path / "cola/in_domain_dev.tsv").write_bytes(b"")
    raw = (tmp_path / "cola/out_of_domain_dev.tsv").read_bytes()
    (tmp_path / "cola/out_of_domain_dev.tsv").write_bytes(raw[:100] + b"\xff" + raw[100:])
    labels = tmp_path / "mnist/t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-200])  # a truncated download
    monkeypatch.setenv("POLARKIT_DATA", str(tmp_path))
    table = D.check(["cola", "mnist"]).set_index("file")
    assert table["present"].all()
    assert table.loc["cola/in_domain_dev.tsv", "problem"].startswith("empty file (0 bytes)")
    assert table.loc["cola/out_of_domain_dev.tsv", "problem"].startswith("not utf-8 text: byte b'\\xff' at offset 100")
    assert "EOFError" in table.loc["mnist/t10k-labels-idx1-ubyte.gz", "problem"]
    assert (
        table.drop(index=["cola/in_domain_dev.tsv", "cola/out_of_domain_dev.tsv", "mnist/t10k-labels-idx1-ubyte.gz"])[
            "problem"
        ]
        == ""
    ).all()
    assert cli.main(["data", "cola", "mnist"]) == 1
    err = capsys.readouterr().err
    assert f"BROKEN {tmp_path / 'cola/in_domain_dev.tsv'} (cola): empty file" in err
    assert f"BROKEN {labels} (mnist)" in err and err.count("BROKEN") == 3


def test_cli_data_passes_on_the_shared_data(capsys):
    from polarkit import cli

    assert cli.main(["data", "cola", "klue_sts", "jd"]) == 0
    assert "BROKEN" not in capsys.readouterr().err
