"""benchmarks/recognize_me_rotation.py: the folds of every rotation never leak, and a cell is scored right."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.recognize_me_rotation import celeba_cells, score_cell, shared_cells, summarize


def _table() -> pd.DataFrame:
    rows = [{"person": p, "source": "shared"} for p, n in (("A", 60), ("B", 40), ("C", 30), ("D", 30), ("E", 90))
            for _ in range(n)]
    rows += [{"person": f"celeba_{i % 50}", "source": "celeba_train"} for i in range(100)]
    rows += [{"person": f"celeba_t{i}", "source": "celeba_test"} for i in range(4) for _ in range(5)]
    rows += [{"person": "celeba_t9", "source": "celeba_test"}] * 3  # an identity with 3 images: not few-shot
    return pd.DataFrame(rows)


def test_shared_rotation_folds_are_disjoint_and_strangers_unseen() -> None:
    table = _table()
    cells = shared_cells(table, counts=(10, 25, 50), draws=2)
    assert len(cells) == 5 * 2 * 3
    for cell in cells:
        folds = [set(cell.train), set(cell.val), set(cell.test)]
        assert not (folds[0] & folds[1] or folds[0] & folds[2] or folds[1] & folds[2])
        seen = folds[0] | folds[1] | folds[2]
        assert not seen & set(cell.strangers)
        stranger_people = set(table.loc[list(cell.strangers), "person"]) - {f"celeba_t{i}" for i in range(10)}
        assert len(stranger_people) == 1 and cell.me not in stranger_people
        assert (table.loc[list(seen), "person"].isin(stranger_people)).sum() == 0
        me_train = (table.loc[list(cell.train), "person"] == cell.me).sum()
        assert me_train == cell.n_train and cell.n_train <= 50
        assert (table.loc[list(cell.test), "person"] == cell.me).sum() >= 9
    a = [c for c in cells if c.me == "A" and c.draw == 0]
    assert [c.n_train for c in a] == [10, 25, 33]  # 60 photos: 18 test, 9 val, 33 left to train
    assert set(a[0].train) < set(a[2].train) and a[0].test == a[2].test  # counts nest; test fixed per draw
    assert shared_cells(table, (10,), 1) == shared_cells(table, (10,), 1)  # seeded


def test_celeba_rotation_is_three_to_train_two_to_test() -> None:
    table = _table()
    cells = celeba_cells(table)
    assert [c.me for c in cells] == ["celeba_t0", "celeba_t1", "celeba_t2", "celeba_t3"]
    for cell in cells:
        assert (table.loc[list(cell.train), "person"] == cell.me).sum() == 3
        assert (table.loc[list(cell.test), "person"] == cell.me).sum() == 2
        assert cell.val == () and cell.me not in set(table.loc[list(cell.strangers), "person"])


def test_score_cell_on_separable_features() -> None:
    table = _table()
    cell = shared_cells(table, (25,), 1)[0]
    y = (table["person"] == cell.me).to_numpy().astype(int)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(table), 8)) + 4.0 * y[:, None]
    scores = score_cell(cell, x, y)
    assert scores["auc"] == 1.0 and scores["f1"] == 1.0 and scores["accuracy"] == 1.0
    assert scores["strangers_false_accept"] == 0.0
    frame = pd.DataFrame([{"rotation": "shared", "strategy": "s", "n_train": 25, **scores},
                          {"rotation": "shared", "strategy": "s", "n_train": 25, **scores, "auc": 0.9}])
    row = summarize(frame)[0]
    assert row["cells"] == 2 and row["auc"] == 0.95 and row["auc_sd"] == 0.05 and row["auc_min"] == 0.9


def test_teacher_student_inputs_are_the_pipelines_filled_face_box(tmp_path) -> None:
    """The student sees what the pipeline's aligned photos show: the face box, its border replicated outside."""
    from PIL import Image

    from recognize_me.me.align import FACE_BOX
    from recognize_me.me.student import face_region
    from recognize_me.me.teacher import filled_frame as filled

    rgb = np.random.default_rng(0).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    frame = filled(tmp_path / "a.png")
    left, top, right, bottom = FACE_BOX
    np.testing.assert_array_equal(frame[top:bottom, left:right], rgb[top:bottom, left:right])
    np.testing.assert_array_equal(frame[0, left:right], rgb[top, left:right])  # above the box: its top row
    assert face_region(frame, 69).shape == (69, 69, 3)
