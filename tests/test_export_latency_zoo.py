"""Issue 19, item 6: benchmarks/export_latency.py --zoo, per zoo entry and deployment target. Its table is built from
the JSON (ops on the accelerator / total, the three EP verdicts, batch-1 latency per runtime), and bad arguments
name the flag and the valid values. The run itself is a benchmark (minutes per entry), not a test."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is a repo folder, not installed
from benchmarks import export_latency


def _report():
    verdict = {"verdict": "YES", "nodes_supported": "7/7", "unsupported_ops": []}
    return {"results": [
        {"entry": "penguins_hard", "openvino": {"verified": True},
         "gpu": [{"ops_on_accelerator": 5, "ops_total": 5}, {"ops_on_accelerator": 15, "ops_total": 15}],
         "ios": {"verdicts": {"NNAPI": verdict, "CoreML NeuralNetwork": verdict,
                              "CoreML MLProgram": dict(verdict, verdict="MAYBE", nodes_supported="6/7")}},
         "latency_ms_batch1": {"LiteRT CPU 1 thread": 0.0123, "ONNX Runtime CPU": 0.04, "OpenVINO CPU": 0.5,
                               "keras model(x)": 12.0}},
        {"entry": "broken", "openvino": {"verified": False}, "gpu": [], "ios": {}, "latency_ms_batch1": {}},
    ]}


def test_zoo_table_has_one_row_per_entry_with_ops_verdicts_and_latencies():
    lines = export_latency.zoo_table(_report()).splitlines()
    assert len(lines) == 4 and "ops on GPU / total" in lines[0] and "LiteRT CPU 1 thr" in lines[0]
    assert lines[2] == ("| penguins_hard | 5/5, 15/15 | YES (7/7) / YES (7/7) / MAYBE (6/7) | verified | 0.012 | "
                        "0.040 | 0.500 | 12.000 |")
    assert lines[3] == "| broken | export failed | export failed | FAILED | - | - | - | - |"


@pytest.mark.parametrize("argv, message", [
    (["--zoo", "penguins_hard,nope"], "--zoo ['nope']: not zoo entries; choose among "),
    (["--zoo", "penguins_hard", "--calls", "0"], "--calls must be a positive integer, got 0"),
    (["--rounds", "-1"], "--rounds must be a positive integer, got -1"),
])
def test_bad_arguments_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_latency.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
