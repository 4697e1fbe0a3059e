"""Which files each dataset needs under the data root, and its Hugging Face hub fallback.

Paths are relative to the data root (see shared/data/MANIFEST.md). `hub` is
(path, config) for `datasets.load_dataset`, or None when the data exists only locally.
"""

from __future__ import annotations

from typing import NamedTuple


class DatasetInfo(NamedTuple):
    files: tuple[str, ...]
    hub: tuple[str, str | None] | None
    description: str


_KDT = "kdt_aivengers/"
# there is no jumpit_14 in the source repo (MANIFEST §6)
JUMPIT_FILES = tuple(f"{_KDT}jd/jumpit/jumpit_{i:02d}.csv" for i in (*range(1, 14), *range(15, 23)))
# crawls holding one free-text posting (채용공고상세) per row instead of sections (MANIFEST §6)
FREE_TEXT_JD_FILES = {"wanted": f"{_KDT}jd/wanted_ver01_230621.csv", "saramin": f"{_KDT}jd/saramin_0626.csv"}

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        (
            "mnist/train-images.npz",
            "mnist/train-labels-idx1-ubyte.gz",
            "mnist/t10k-images-idx3-ubyte.gz",
            "mnist/t10k-labels-idx1-ubyte.gz",
        ),
        ("ylecun/mnist", None),
        "MNIST digits, train 60,000 / test 10,000, uint8 28x28",
    ),
    "cola": DatasetInfo(
        ("cola/in_domain_train.tsv", "cola/in_domain_dev.tsv", "cola/out_of_domain_dev.tsv"),
        ("nyu-mll/glue", "cola"),
        "GLUE CoLA acceptability, train 8,551 / validation 1,043",
    ),
    "klue_sts": DatasetInfo(
        ("klue_sts/klue_sts_train.csv", "klue_sts/klue-sts-v1.1_dev.json"),
        ("klue/klue", "sts"),
        "KLUE-STS v1.1, train 11,668 (CSV) / dev 519 (official JSON)",
    ),
    # KorSTS has no official hub copy; dkoterwa/kor-sts (splits train/valid/test) is a
    # community upload whose column names are not verified here.
    "korsts": DatasetInfo(
        ("korsts/sts-train.tsv", "korsts/sts-dev.tsv"), ("dkoterwa/kor-sts", None), "KorSTS, train 5,749 / dev 1,500"
    ),
    "nsmc": DatasetInfo(
        ("nsmc/ratings_test.txt", "nsmc_derived/ratings_train_derived.txt"),
        ("e9t/nsmc", None),
        "NSMC movie reviews: official test 50,000; train = derived re-sample minus test ids",
    ),
    "unsmile": DatasetInfo(
        ("unsmile/unsmile_train_v1.0.tsv", "unsmile/unsmile_valid_v1.0.tsv"),
        ("smilegate-ai/kor_unsmile", None),
        "Korean UnSmile multi-label hate speech, train 15,005 / valid 3,737 (CC BY-NC-ND)",
    ),
    "nikl_absa": DatasetInfo(
        (
            "korean_absa/nikluge_sa_2022/nikluge-sa-2022-train.jsonl",
            "korean_absa/nikluge_sa_2022/nikluge-sa-2022-dev.jsonl",
        ),
        None,
        "NIKL 2022 ABSA product reviews, train 3,001 / dev 2,794 (internal use only)",
    ),
    "ksc_absa": DatasetInfo(
        (
            "korean_absa/food_review_ksc2021/food_review_Train.xml.seg",
            "korean_absa/food_review_ksc2021/food_review_Test.xml.seg",
        ),
        None,
        "KSC 2021 food-review ABSA (5 aspects x 3 polarities), train 5,044 / test 1,249",
    ),
    "jd": DatasetInfo(
        (f"{_KDT}jd/sampling_data.csv", f"{_KDT}testsheet/test_case.csv"),
        None,
        "KDT-AiVENGERS: 41 sample JDs and the 38-pair TestSheet over them",
    ),
    "jd_corpus": DatasetInfo(
        (*JUMPIT_FILES, f"{_KDT}jd/jobplanet.csv", f"{_KDT}jd/extracted_dataengineer.csv"),
        None,
        "JD corpus: Jumpit crawl (2,724 unique URLs) + Jobplanet crawls",
    ),
    "jd_free_text": DatasetInfo(
        tuple(FREE_TEXT_JD_FILES.values()),
        None,
        "Wanted (60) and Saramin (386) JD crawls, one free-text posting each (recommendation pool)",
    ),
    "lectures": DatasetInfo(
        (f"{_KDT}lectures/udemy_resultKE_prep.csv", f"{_KDT}lectures/prgms_ver01_230715.csv"),
        None,
        "Udemy (5,735) and Programmers (126) lecture lists",
    ),
    "keywords": DatasetInfo(
        (
            f"{_KDT}keywords/job_skills.csv",
            f"{_KDT}keywords/udemy_skills.csv",
            f"{_KDT}keywords/userwords_ver01.csv",
            f"{_KDT}keywords/tech_stack.json",
            f"{_KDT}keywords/skill.json",
        ),
        None,
        "skill keyword lists and canonical-name -> alias dictionaries",
    ),
}
