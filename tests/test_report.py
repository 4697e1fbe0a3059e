"""polarkit.report: the closing table of `polarkit run`, and compare/index surviving malformed run files."""

import json
import re
from pathlib import Path

import pytest
import yaml

from polarkit import cli, report, runs


def make_run(outputs: Path, notebook: str, metrics: dict | None = None, params: dict | None = None, **status) -> Path:
    """A run folder as the executor leaves it: params.yaml, status.json, metrics.json (via Run.log_metrics)."""
    d = runs.new_run_dir(notebook, outputs)
    (d / "params.yaml").write_text(yaml.safe_dump(params or {"seed": 0}), encoding="utf-8")
    runs.write_json(
        d / "status.json", {"state": "succeeded", "start": runs.now(), "profile": "quick", "duration_s": 12.0, **status}
    )
    if metrics is not None:
        runs.Run(d).log_metrics(metrics)
    return d


# ---- closing table ------------------------------------------------------------------------


def test_closing_table_gives_each_notebook_its_headline(outputs):
    dirs = [
        make_run(
            outputs, "03_nlp_cola", {"val_accuracy": 0.7, "val_mcc": 0.2283, "train_seconds": 200.0}, duration_s=208.4
        ),
        make_run(
            outputs,
            "04_bert_embedding",
            {
                "train_windows": 900,
                "heldout_initial_loss": 13.04,
                "heldout_adapted_loss": 8.031,
                "heldout_control_loss": 7.99,
                "testsheet_base_mean_auc": 0.778,
            },
        ),
        make_run(
            outputs,
            "05_cosine_jd",
            {"testsheet_auc": 0.778, "testsheet_best_accuracy": 0.7, "testsheet_seed_gap": 0.403, "rec_pool_size": 800},
        ),
        make_run(
            outputs,
            "06_sts",
            {"zeroshot_pearson": 0.776, "dev_pearson": 0.827, "dev_spearman": 0.8, "dev_f1": 0.742, "val_loss": 0.03},
        ),
        make_run(
            outputs,
            "07_review_classifier",
            {
                "val_micro_f1": 0.5,
                "valid_micro_f1": 0.564,
                "valid_tuned_micro_f1": 0.614,
                "valid_tfidf_tuned_micro_f1": 0.625,
            },
            params={"task": "keywords", "seed": 0},
        ),
        make_run(outputs, "08_compare_runs", {"runs_total": 9}),
        make_run(outputs, "98_tiny", {"train_seconds": 3.0, "val_lr": 0.5, "test_lr": 0.1}),  # no declared headline
    ]
    table = report.closing_table(dirs)
    assert list(table.columns) == ["notebook", "run", "status", "duration", "headline"]
    assert list(table["run"]) == [d.name for d in dirs]  # this invocation's folders, in its order
    assert dict(zip(table.notebook, table.headline)) == {
        "03_nlp_cola": "val_mcc=0.2283",
        "04_bert_embedding": "heldout_initial_loss=13.04, heldout_adapted_loss=8.031, heldout_control_loss=7.99",
        "05_cosine_jd": "testsheet_auc=0.778, testsheet_seed_gap=0.403",
        "06_sts": "dev_pearson=0.827, dev_f1=0.742, zeroshot_pearson=0.776",
        "07_review_classifier": "keywords: valid_micro_f1=0.564, valid_tuned_micro_f1=0.614, "
        "valid_tfidf_tuned_micro_f1=0.625",
        "08_compare_runs": "",
        "98_tiny": "test_lr=0.1",  # fallback: the held-out split first
    }
    assert table["duration"].iloc[0] == "208 s"
    assert not table.isna().any().any() and "NaN" not in table.to_string()


def test_closing_table_07_follows_the_task_parameter(outputs):
    sentiment = make_run(
        outputs,
        "07_review_classifier",
        {"test_accuracy": 0.785, "test_tfidf_accuracy": 0.7851, "val_accuracy": 0.79},
        params={"task": "sentiment"},
    )
    pairs = make_run(
        outputs,
        "07_review_classifier",
        {"dev_accuracy": 0.6, "dev_pair_f1": 0.458, "dev_tfidf_pair_f1": 0.4581},
        params={"task": "keyword_sentiment"},
    )
    assert list(report.closing_table([sentiment, pairs])["headline"]) == [
        "sentiment: test_accuracy=0.785, test_tfidf_accuracy=0.7851",
        "keyword_sentiment: dev_pair_f1=0.458, dev_tfidf_pair_f1=0.4581",
    ]


def test_closing_table_lists_only_the_given_runs_and_shows_failures(outputs):
    make_run(outputs, "03_nlp_cola", {"val_mcc": 0.9})  # another process's run, same notebook, same outputs
    failed = make_run(outputs, "03_nlp_cola", None, state="failed", error="ValueError", message="bad lr", cell=7)
    running = make_run(outputs, "06_sts", {"zeroshot_pearson": float("nan")}, state="running", duration_s=None)
    table = report.closing_table([failed, running])
    assert list(table["run"]) == [failed.name, running.name]
    assert list(table["status"]) == ["failed", "running"]
    assert list(table["headline"]) == ["ValueError: bad lr", "zeroshot_pearson=n/a"]  # nan is logged as null
    assert list(table["duration"]) == ["12 s", ""]
    assert report.closing_table([]).empty


# ---- malformed files, unknown metrics, the index -----------------------------------------


@pytest.fixture
def mixed(outputs):
    """Two good runs of one notebook and three with a malformed status.json or metrics.json."""
    good = [make_run(outputs, "98_tiny", {"test_lr": lr, "val_loss": 1.0}, params={"lr": lr}) for lr in (0.1, 0.2)]
    as_list, as_string, bad_status = (make_run(outputs, "98_tiny", params={"lr": 0.3}) for _ in range(3))
    (as_list / "metrics.json").write_text(json.dumps([0.5, 0.6]))
    (as_string / "metrics.json").write_text(json.dumps("test_lr=0.9"))
    (bad_status / "status.json").write_text(json.dumps(["succeeded"]))
    return good, as_list, as_string, bad_status


def test_a_non_object_metrics_or_status_file_flags_only_that_run(outputs, mixed, capsys):
    good, as_list, as_string, bad_status = mixed
    board = report.load_runs(outputs).set_index("run")
    assert board.loc[[d.name for d in good], "test_lr"].tolist() == [0.1, 0.2]
    assert board.loc[[d.name for d in good], "error"].isna().all()
    for d in (as_list, as_string):
        assert board.loc[d.name, "error"] == "metrics.json is not an object"
        assert board.loc[d.name, "status"] == "succeeded"
    assert board.loc[bad_status.name, "error"] == "status.json is not an object"
    assert board.loc[bad_status.name, "status"] == "unknown"
    ranked = report.leaderboard(outputs, "98_tiny", metric="test_lr")
    assert list(ranked["test_lr"])[:2] == [0.2, 0.1]
    assert cli.main(["compare", "98_tiny", "--metric", "test_lr", "--outputs", str(outputs)]) == 0
    assert "metrics.json is not an object" in capsys.readouterr().out
    assert report.closing_table([as_list])["headline"].tolist() == ["metrics.json is not an object"]
    page = report.write_index(outputs).read_text(encoding="utf-8")
    assert _cells(page, as_string.name)[4] == "metrics.json is not an object"


def test_a_stray_non_number_metric_still_sorts(outputs):
    make_run(outputs, "98_tiny", {"test_lr": 0.1})
    make_run(outputs, "98_tiny", {"test_lr": 0.3})
    odd = make_run(outputs, "98_tiny")
    runs.write_json(odd / "metrics.json", {"test_lr": "high"})  # not via log_metrics, which drops strings
    assert list(report.leaderboard(outputs, "98_tiny", metric="test_lr")["test_lr"]) == [0.3, 0.1, "high"]


def test_unknown_metric_is_refused_with_the_available_ones(outputs, mixed, capsys):
    with pytest.raises(ValueError, match=r"unknown metric 'test_l' \(did you mean 'test_lr'\?\).*: test_lr, val_loss$"):
        report.leaderboard(outputs, "98_tiny", metric="test_l")
    assert cli.main(["compare", "98_tiny", "--metric", "accuracy", "--outputs", str(outputs)]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'accuracy'" in err and "matching '98_tiny': test_lr, val_loss" in err
    assert len(report.leaderboard(outputs, "98_tiny", metric="val_loss")) == 5  # a known one still works


def _cells(page: str, run: str) -> list[str]:
    row = re.search(rf"<tr><td>[^<]*</td><td>{run}</td>(.*?)</tr>", page).group(1)
    return re.findall(r"<td>(.*?)</td>", row)  # status, profile, seconds, metrics, error, files


def test_index_shows_empty_cells_not_nan(outputs):
    good = make_run(outputs, "98_tiny", {"test_lr": 0.1, "val_loss": 1.0})
    failed = make_run(outputs, "98_tiny", {"test_lr": 0.5}, state="failed", error="ValueError", message="bad")
    running = make_run(outputs, "98_tiny", state="running", duration_s=None, profile=None)
    page = report.write_index(outputs).read_text(encoding="utf-8")
    assert not re.search(r"<td>nan</td>", page, re.I)
    status, _, seconds, metrics, error, _ = _cells(page, good.name)
    assert (status, seconds, metrics, error) == ("succeeded", "12.0", "test_lr=0.1, val_loss=1", "")
    assert _cells(page, failed.name)[4] == "ValueError: bad"
    assert _cells(page, running.name)[:3] == ["running", "", ""]


def test_default_metric_never_picks_a_parameter(outputs):
    for frac in (0.1, 0.2):
        make_run(outputs, "98_tiny", {"runs_total": 3}, params={"val_frac": frac})
    board = report.leaderboard(outputs, "98_tiny")
    assert "val_frac" in board and report.default_metric(board) is None
    make_run(outputs, "98_tiny", {"val_mcc": 0.2}, params={"val_frac": 0.3})
    assert report.default_metric(report.leaderboard(outputs, "98_tiny").query("status == 'succeeded'")) == "val_mcc"


def test_leaderboard_sorts_by_the_metric_direction(outputs):
    for loss, acc in ((0.3, 0.8), (0.1, 0.9), (0.2, 0.7)):
        make_run(outputs, "98_tiny", {"val_loss": loss, "val_accuracy": acc})
    assert list(report.leaderboard(outputs, "98_tiny", metric="val_loss")["val_loss"]) == [0.1, 0.2, 0.3]
    assert list(report.leaderboard(outputs, "98_tiny", metric="val_accuracy")["val_accuracy"]) == [0.9, 0.8, 0.7]
    assert list(report.leaderboard(outputs, "98_tiny", metric="val_loss", ascending=False)["val_loss"]) == [
        0.3,
        0.2,
        0.1,
    ]
