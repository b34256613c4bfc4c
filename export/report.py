"""What an export produced and how each artifact compared with the Keras model (printed as a ✓/✗ table)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mtmm_keras import _output_folder


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
    """One exported file: its path, format, flavour, size, sha256, input/output specs, checks and status."""
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
    # what the deployment target records about this file (mtmm_keras.export.targets): shapes, int8 I/O params,
    # mobile usability verdicts, GPU accelerator coverage and differences
    deployment: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """"failed" (runtime error or a check failed), "verified" (every check passed) or "unverified" (not run)."""
        if self.error is not None or (self.verified and not (self.names_match and all(c.passed for c in self.checks))):
            return "failed"
        return "verified" if self.verified else "unverified"

    @property
    def passed(self) -> bool:
        """True only for an artifact that was run and matched the Keras model (never for unverified ones)."""
        return self.status == "verified"


@dataclasses.dataclass
class ExportReport:
    """What `export_model` wrote and proved: one `ArtifactReport` per artifact, tower reports, the tolerances."""
    out_dir: str
    model_name: str
    artifacts: list[ArtifactReport]
    sample_batch: int
    tolerance: dict[str, Any]
    holdout: str | None = None  # where the rows that judged quantized artifacts came from
    holdout_rows: int | None = None
    towers: dict[str, str] = dataclasses.field(default_factory=dict)  # modality -> its manifest, relative
    # a mixed-precision source: its dtype policies, and that the float32 artifacts were checked against its float32 copy
    source_precision: dict[str, Any] | None = None
    # {input name: how it was drawn} when verification used random rows (no data given)
    random_inputs: dict[str, str] | None = None
    tower_reports: dict[str, "ExportReport"] = dataclasses.field(default_factory=dict, repr=False)
    target: str = "server"  # the deployment target (mtmm_keras.export.targets)

    @property
    def verified(self) -> bool:
        """True when every artifact (and tower) was run in its runtime, whatever the outcome."""
        return all(a.verified for a in self.artifacts) and all(r.verified for r in self.tower_reports.values())

    @property
    def passed(self) -> bool:
        """True only when every artifact (and tower) was verified and matched; False for unverified exports."""
        return all(a.passed for a in self.artifacts) and all(r.passed for r in self.tower_reports.values())

    @property
    def failed(self) -> bool:
        """True when any artifact (or tower) was run and did not match the Keras model."""
        return any(a.status == "failed" for a in self.artifacts) or any(r.failed for r in self.tower_reports.values())

    def to_dict(self) -> dict[str, Any]:
        """The manifest: every path relative to the export folder, so it stays true when the folder is copied."""
        data = {"written_by": _output_folder.marker("export")}
        data.update({k: v for k, v in dataclasses.asdict(self).items() if k not in ("out_dir", "tower_reports")})
        for artifact, entry in zip(self.artifacts, data["artifacts"]):
            entry["path"] = os.path.relpath(artifact.path, self.out_dir)
            entry["status"] = artifact.status
            entry["passed"] = artifact.passed if artifact.verified else None
        data["verified"] = self.verified
        data["passed"] = self.passed if self.verified else None
        return data

    def write_manifest(self, path: str) -> None:
        """Write the manifest (`to_dict()`) as JSON to `path`."""
        _output_folder.write_json(path, self.to_dict())

    def table(self) -> str:
        """A ✓/✗ line per artifact and output: shape, max |Δ| (float formats) or metric (quantized)."""
        target = f", target {self.target}" if self.target != "server" else ""
        lines = [f"Export of {self.model_name!r} → {self.out_dir}  (sample batch {self.sample_batch}{target})"]
        header = f"  {'':2}{'artifact':<28}{'output':<14}{'shape':<16}{'max|Δ|':>10}{'metric keras→artifact':>28}{'size':>10}{'b1 ms':>8}"
        lines.append(header)
        for a in self.artifacts:
            name = f"{a.format}/{a.quantization}"
            size = f"{a.size_bytes / 1024:.0f}K"
            latency = f"{a.latency_ms_batch1:.3f}" if a.latency_ms_batch1 is not None else "-"
            if a.error:
                lines.append(f"  ✗ {name:<28}{a.error}")
                continue
            if not a.verified:
                lines.append(f"  - {name:<28}{'(not verified)':<40}{size:>10}")
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
        for a in self.artifacts:
            lines.extend(f"  {a.format}/{a.quantization}: {line}" for line in deployment_lines(a.deployment))
        if self.holdout:
            lines.append(f"  quantized artifacts judged on {self.holdout_rows} rows: {self.holdout}")
        if self.source_precision:
            lines.append(f"  source computes in {', '.join(self.source_precision['dtype_policies'])}: artifacts are "
                         f"float32, checked against {self.source_precision['verified_against']}")
        if self.random_inputs:
            lines.append("  random inputs: " + "; ".join(f"{k}: {v.split(' (')[0]}" for k, v in self.random_inputs.items()))
        if self.failed:
            lines.append("VERIFICATION FAILED ✗")
        elif not self.verified:
            lines.append("NOT VERIFIED: artifacts were written without being run or compared with the Keras model (verify=False)")
        else:
            lines.append("all artifacts verified ✓")
        return "\n".join(lines)


def deployment_lines(deployment: dict[str, Any] | None) -> list[str]:
    """What a deployment target recorded about one artifact, as short report lines."""
    lines = []
    for key, value in (deployment or {}).items():
        if key == "shapes":
            first = next(iter(value.values()), {})
            lines.append("shapes " + ("static" if "static" in first else "batch min/opt/max "
                                      + "/".join(str(first[k][0]) for k in ("min", "opt", "max"))))
        elif key == "io_quantization":
            parts = [f"{name} {p['dtype']} (scale {p['scale']:.3g}, zero point {p['zero_point']})"
                     for kind in ("inputs", "outputs") for name, p in value[kind].items()]
            lines.append("integer I/O: " + ", ".join(parts) if parts else "integer I/O: none")
        elif key == "mobile_rewrites":
            if value:
                lines.append("rewritten for NNAPI / CoreML: " + ", ".join(f"{k} ×{n}" for k, n in value.items()))
        elif key == "mobile_usability":
            if "error" in value:
                lines.append(f"mobile usability check failed: {value['error'][:200]}")
                continue
            lines.append("mobile: " + ", ".join(
                f"{ep} {v['verdict']} ({v['nodes_supported']} nodes"
                + (f"; blocked by {', '.join(v['unsupported_ops'])}" if v["unsupported_ops"] else "") + ")"
                for ep, v in value.items()))
        elif key == "gpu_delegate":
            if not value.get("ran"):
                lines.append(f"GPU accelerator not checked: {value.get('reason', '')}")
            else:
                accelerated = "fully accelerated" if value["fully_accelerated"] else "NOT fully accelerated"
                diffs = ", ".join(f"max|Δ| vs CPU {mode} {d:.1e}" for mode, d in value.get("max_abs_diff", {}).items())
                lines.append(f"GPU accelerator ({value.get('adapter', '?')}): {accelerated}; {diffs}"
                             + (f"; off the GPU: {'; '.join(value['unsupported'])}" if value.get("unsupported") else ""))
    return lines


class ExportVerificationError(RuntimeError):
    """An artifact did not match the Keras model; nothing was written under the output folder."""

    def __init__(self, report: ExportReport):
        self.report = report
        super().__init__("export verification failed; nothing was written.\n" + report.table())
