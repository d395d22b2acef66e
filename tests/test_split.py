import collections
import random

from agejax.data import labels, split


def records(n: int, seed: int = 0) -> list[labels.Record]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        age, gender = rng.randint(0, 116), rng.randint(0, 1)
        items.append(labels.Record(f"{age}_{gender}_0_{i:017d}.jpg.chip.jpg", age, gender, 0, "src", "m"))
    return items


def test_split_is_deterministic_and_independent_of_input_order():
    items = records(3000)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert split.make_split(items) == split.make_split(shuffled)


def test_split_is_stratified_by_age_bin_and_gender():
    items = records(5000)
    assignment = split.make_split(items)
    per_stratum = collections.defaultdict(collections.Counter)
    for record in items:
        per_stratum[split.stratum(record)][assignment[record.file_name]] += 1
    for counts in per_stratum.values():
        total = sum(counts.values())
        for part, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            # Dealt round a 10-slot cycle: only the last, partial cycle can stray.
            assert abs(counts[part] - share * total) < 2, counts


def test_splits_do_not_overlap_and_cover_everything():
    items = records(1000)
    assignment = split.make_split(items)
    assert set(assignment) == {r.file_name for r in items}
    assert set(assignment.values()) == set(split.SPLITS)


def test_manifest_round_trip(tmp_path):
    assignment = split.make_split(records(500))
    path = tmp_path / "m.csv"
    split.write_manifest(assignment, path)
    assert split.read_manifest(path) == assignment
    first_hash = split.manifest_hash(path)
    split.write_manifest(assignment, path)
    assert split.manifest_hash(path) == first_hash  # byte-identical rewrite


def test_apply_manifest_reports_unlisted_and_missing():
    items = records(50)
    assignment = split.make_split(items[:40])
    extra = labels.Record("1_0_0_extra.jpg.chip.jpg", 1, 0, 0, "user", "x")
    parts = split.apply_manifest(items[:39] + [extra], assignment)
    assert parts.unlisted == [extra]
    assert parts.missing == [items[39].file_name]
    assert sum(len(v) for v in parts.by_split.values()) == 39
    report = parts.report()
    assert "1 images are not in the split manifest" in report and "1 manifest files were not found" in report


def test_committed_manifest_is_80_10_10_and_frozen():
    assignment = split.read_manifest()
    counts = collections.Counter(assignment.values())
    assert sum(counts.values()) == 22205
    assert counts == {"train": 17755, "val": 2226, "test": 2224}
    # Changing the manifest changes every number we report: it must not change silently.
    assert split.manifest_hash() == "a19f0cbcba75891f790c986c37762013ebc63f320482f8d36f5b837c06f1f6bc"
