"""What people read is rounded, and report tables may wrap their long column names (they fit 1280 px)."""

from __future__ import annotations

from recognize_me.evaluation.report import table_html
from recognize_me.me.report import _row


def test_long_column_names_may_wrap_at_underscores():
    html = table_html([{"strangers_recall_at_1pct_far": 0.9888888888888889}])
    assert "<th>strangers_<wbr>recall_<wbr>at_<wbr>1pct_<wbr>far</th>" in html
    assert "<td>0.9889</td>" in html


def test_me_report_rows_are_rounded():
    row = _row({"strategy": "fine_tuning", "val_roc_auc": 0.9888888888888889, "f1": 1.0, "test_photos": 7}, None)
    assert row["val_roc_auc"] == 0.9889 and row["f1"] == 1.0 and row["test_photos"] == 7


def test_the_strategies_table_has_one_row_per_metric():
    from recognize_me.me.report import by_metric

    rows = [{"strategy": "a", "f1": 0.5, "status": "completed"}, {"strategy": "b", "f1": 0.25, "status": "failed"}]
    assert by_metric(rows) == [{"metric": "f1", "a": 0.5, "b": 0.25},
                               {"metric": "status", "a": "completed", "b": "failed"}]
    assert by_metric([]) == []
