"""Portfolio bundles as signed containers: SHA256SUMS + signature for the folder, a
deterministic zip signed region by region in its comment, and their verification."""

from labkit.adapters.bundle.finalize import finalize_bundle
from labkit.adapters.bundle.verify import Problem, SignatureReport, VerifyReport, verify_path

__all__ = ["Problem", "SignatureReport", "VerifyReport", "finalize_bundle", "verify_path"]
