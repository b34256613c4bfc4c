"""What an export produced and how each artifact compared with the Keras model (printed as a ✓/✗ table)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass
class OutputCheck:
    """One output of one artifact against the Keras model on the same sample batch."""

    name: str
    expected_shape: list
    shape: list | None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    metric: str | None = None
    keras_value: float | None = None
    artifact_value: float | None = None
    passed: bool = False
    reason: str = ""


@dataclasses.dataclass
class ArtifactReport:
    path: str
    format: str
    quantization: str
    size_bytes: int = 0
    sha256: str = ""
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    checks: list[OutputCheck] = dataclasses.field(default_factory=list)
    names_match: bool = True
    latency_ms_batch1: float | None = None
    error: str | None = None
    verified: bool = False

    @property
    def passed(self) -> bool:
        return self.error is None and (not self.verified or (self.names_match and all(c.passed for c in self.checks)))


@dataclasses.dataclass
class ExportReport:
    out_dir: str
    model_name: str
    artifacts: list[ArtifactReport]
    sample_batch: int
    tolerance: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for artifact, entry in zip(self.artifacts, data["artifacts"]):
            entry["passed"] = artifact.passed
        data["passed"] = self.passed
        return data

    def write_manifest(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, default=float)

    def table(self) -> str:
        """A ✓/✗ line per artifact and output: shape, max |Δ| (float formats) or metric (quantized)."""
        lines = [f"Export of {self.model_name!r} → {self.out_dir}  (sample batch {self.sample_batch})"]
        header = f"  {'':2}{'artifact':<28}{'output':<14}{'shape':<16}{'max|Δ|':>10}{'metric keras→artifact':>28}{'size':>10}{'b1 ms':>8}"
        lines.append(header)
        for a in self.artifacts:
            name = f"{a.format}/{a.quantization}"
            size = f"{a.size_bytes / 1024:.0f}K"
            latency = f"{a.latency_ms_batch1:.3f}" if a.latency_ms_batch1 is not None else "-"
            if a.error:
                lines.append(f"  ✗ {name:<28}{a.error}")
                continue
            if not a.names_match:
                lines.append(f"  ✗ {name:<28}output names {[o['name'] for o in a.outputs]} do not match the model's")
            for i, c in enumerate(a.checks):
                mark = "✓" if c.passed else "✗"
                err = f"{c.max_abs_error:.1e}" if c.max_abs_error is not None else "-"
                metric = (
                    f"{c.metric} {c.keras_value:.4f}→{c.artifact_value:.4f}" if c.metric and c.keras_value is not None else ""
                )
                shape = "x".join(str(d) for d in (c.shape or ["?"]))
                tail = f"{size:>10}{latency:>8}" if i == 0 else ""
                lines.append(f"  {mark} {name if i == 0 else '':<28}{c.name:<14}{shape:<16}{err:>10}{metric:>28}{tail}")
                if not c.passed and c.reason:
                    lines.append(f"      {c.reason}")
        lines.append("all artifacts verified ✓" if self.passed else "VERIFICATION FAILED ✗")
        return "\n".join(lines)


class ExportVerificationError(RuntimeError):
    """An artifact did not match the Keras model; nothing was written under the output folder."""

    def __init__(self, report: ExportReport):
        self.report = report
        super().__init__("export verification failed; nothing was written.\n" + report.table())
