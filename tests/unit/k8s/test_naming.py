"""Job names, labels and selectors: deterministic, valid, never shared by two ids."""

from __future__ import annotations

import itertools
import re

import pytest

from qforge.k8s import naming
from qforge.k8s.naming import job_id_label_value, job_name
from qforge.kubesyntax import is_label_key, is_label_value

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Valid store ids of every shape: generated ones, dashes, underscores at either end,
# the longest, ones that look like a hashed name, ones that differ only in '_' vs '-'.
IDS = [
    "water",
    "w",
    "0",
    "water_20261128_133039_k3f9",
    "water-20261128-133039-k3f9",
    "water_20261128-133039_k3f9",
    "benzene_opt",
    "benzene-opt",
    "benzene--opt",
    "benzene__opt",
    "water_",
    "water-",
    "water__",
    "water--",
    "a" * 60,
    "a" * 61,
    "a" * 62,
    "a" * 63,
    "a" * 62 + "_",
    "a" * 62 + "-",
    "b" + "_" * 62,
    "b" + "-" * 62,
    "x-0123456789",
    "x-012345678",
    "x-0123456789a",
    "water-ec9bea7d26",
    "qf-water",
    "0-abcdef0123",
]
# The hashed name of a generated id, resubmitted as an id of its own.
IDS.append(job_name("water_20261128_133039_k3f9").removeprefix("qf-"))
IDS.append(job_id_label_value("water_"))


@pytest.mark.parametrize("job_id", IDS)
def test_job_name_is_a_dns1123_label_of_at_most_63_characters(job_id: str) -> None:
    name = job_name(job_id)
    assert len(name) <= 63
    assert DNS1123_LABEL.match(name), name
    assert name.startswith("qf-")


@pytest.mark.parametrize("job_id", IDS)
def test_job_name_is_deterministic(job_id: str) -> None:
    assert job_name(job_id) == job_name(job_id) == job_name(str(job_id))
    assert job_name(job_id, 3) == job_name(job_id, 3)


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        ("water", "qf-water"),
        ("benzene-opt", "qf-benzene-opt"),
        ("a" * 60, "qf-" + "a" * 60),
    ],
)
def test_a_dns_compatible_id_is_kept_verbatim(job_id: str, expected: str) -> None:
    assert job_name(job_id) == expected


def test_a_generated_id_keeps_a_readable_prefix_plus_a_hash() -> None:
    name = job_name("water_20261128_133039_k3f9")
    assert re.fullmatch(r"qf-water-20261128-133039-k3f9-[0-9a-f]{10}", name), name


@pytest.mark.parametrize("job_id", ["a" * 61, "a" * 63, "water_", "benzene__opt", "x-0123456789"])
def test_an_altered_id_gets_a_hash_suffix(job_id: str) -> None:
    assert re.search(r"-[0-9a-f]{10}$", job_name(job_id))


def test_no_two_ids_share_a_job_name() -> None:
    names = {job_id: job_name(job_id) for job_id in IDS}
    assert len(set(names.values())) == len(set(IDS)), names


def test_no_two_ids_share_a_name_across_many_similar_ids() -> None:
    # Every id of up to 3 characters over an alphabet rich in clashes after sanitizing.
    alphabet = "a0_-"
    ids = [
        "".join(chars)
        for n in range(1, 4)
        for chars in itertools.product(alphabet, repeat=n)
        if chars[0] in "a0"
    ]
    assert len({job_name(i) for i in ids}) == len(ids)
    assert len({job_id_label_value(i) for i in ids}) == len(ids)


@pytest.mark.parametrize("job_id", IDS)
def test_attempts_of_one_job_have_distinct_names(job_id: str) -> None:
    names = [job_name(job_id, attempt) for attempt in range(1, 6)]
    assert len(set(names)) == 5
    for name in names:
        assert len(name) <= 63 and DNS1123_LABEL.match(name)


def test_later_attempts_never_take_another_jobs_first_name() -> None:
    firsts = {job_name(i) for i in IDS}
    later = {job_name(i, a) for i in IDS for a in (2, 3)}
    assert not firsts & later


@pytest.mark.parametrize("bad", ["", None])
def test_job_name_rejects_an_empty_id(bad: str | None) -> None:
    with pytest.raises((ValueError, TypeError)):
        job_name(bad)  # type: ignore[arg-type]


def test_job_name_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        job_name("water", 0)


@pytest.mark.parametrize("job_id", IDS)
def test_job_id_label_value_is_a_valid_label_value(job_id: str) -> None:
    value = job_id_label_value(job_id)
    assert value and len(value) <= 63 and LABEL_VALUE.match(value), value


@pytest.mark.parametrize(
    "job_id", ["water", "water_20261128_133039_k3f9", "benzene__opt", "a" * 63]
)
def test_job_id_label_value_is_the_id_itself_when_it_can_be(job_id: str) -> None:
    assert job_id_label_value(job_id) == job_id


def test_no_two_ids_share_a_label_value() -> None:
    values = {job_id_label_value(i) for i in IDS}
    assert len(values) == len(set(IDS))


def test_the_exact_id_is_read_back_from_metadata() -> None:
    meta = {
        "labels": {naming.LABEL_JOB_ID: job_id_label_value("water_")},
        "annotations": {naming.ANNOTATION_JOB_ID: "water_"},
    }
    assert naming.job_id_from_metadata(meta) == "water_"
    assert naming.job_id_from_metadata({"labels": {naming.LABEL_JOB_ID: "water"}}) == "water"
    assert naming.job_id_from_metadata({"labels": {}, "annotations": None}) is None
    assert naming.job_id_from_metadata({}) is None


def test_label_and_annotation_keys_are_the_documented_ones() -> None:
    assert naming.LABEL_NAME == "app.kubernetes.io/name"
    assert naming.LABEL_COMPONENT == "app.kubernetes.io/component"
    assert naming.LABEL_MANAGED_BY == "app.kubernetes.io/managed-by"
    assert naming.LABEL_JOB_ID == "qforge.io/job-id"
    assert naming.ANNOTATION_METHOD == "qforge.io/method"
    assert naming.ANNOTATION_TASK == "qforge.io/task"
    assert naming.ANNOTATION_FORMULA == "qforge.io/formula"
    assert naming.base_labels("water") == {
        "app.kubernetes.io/name": "qforge",
        "app.kubernetes.io/component": "runner",
        "app.kubernetes.io/managed-by": "qforge-controller",
        "qforge.io/job-id": "water",
    }


def test_selector_lists_every_qforge_runner_job() -> None:
    assert naming.selector() == (
        "app.kubernetes.io/name=qforge,app.kubernetes.io/component=runner,"
        "app.kubernetes.io/managed-by=qforge-controller"
    )


def test_selector_for_one_job_adds_its_label_value() -> None:
    assert naming.selector("water_").endswith(",qforge.io/job-id=" + job_id_label_value("water_"))
    assert naming.selector("water").startswith(naming.selector() + ",")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("project", True),
        ("example.com/project", True),
        ("a.b-c.example/x_y.z", True),
        ("", False),
        ("/x", False),
        ("Example.com/x", False),
        ("x/", False),
        ("-x", False),
        ("a/b/c", False),
        ("x" * 64, False),
        ("x" * 63, True),
        ("project\n", False),
        ("example.com\n/project", False),
    ],
)
def test_is_label_key(key: str, valid: bool) -> None:
    """The one label-key check (qforge_runner.spec; manifests use it too)."""
    assert is_label_key(key) is valid


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        ("qforge.io/job-id", True),
        ("team.qforge.io/x", True),
        ("app.kubernetes.io/name", True),
        ("kubernetes.io/hostname", True),
        ("node.k8s.io/x", True),
        ("notkubernetes.io/x", False),
        ("project", False),
        ("example.com/project", False),
    ],
)
def test_reserved_label_domains(key: str, reserved: bool) -> None:
    assert naming.is_reserved_label_key(key) is reserved


@pytest.mark.parametrize(
    ("value", "valid"),
    [("", True), ("H2O", True), ("a" * 63, True), ("a" * 64, False), ("x_", False), ("_x", False),
     ("H2O\n", False)],
)
def test_is_label_value(value: str, valid: bool) -> None:
    assert is_label_value(value) is valid
