"""Model artifacts handed from one job to the next through an input channel.

A training job's /opt/ml/model reaches S3 either as a folder of files (OutputDataConfig CompressionType NONE) or as
one `model.tar.gz` (GZIP, SageMaker's default). A channel that points at the tarball holds that single file, so a
channel is accepted in both forms: a folder with the files, or a folder whose only content is a `.tar.gz`, which is
unpacked once next to the channel (or into a temporary folder when the channel is read-only).
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
from pathlib import Path

from safetensors import safe_open

from tunec_entry.failure import EntryError

log = logging.getLogger("tunec")

UNPACKED_SUFFIX = ".unpacked"


def resolve_artifact_dir(channel_dir: Path) -> Path:
    """The folder that holds the artifact's files."""
    entries = [p for p in channel_dir.iterdir() if not p.name.startswith(".")]
    archives = [p for p in entries if p.is_file() and p.name.endswith(".tar.gz")]
    if len(entries) != 1 or len(archives) != 1:
        return channel_dir
    return _unpack(archives[0], channel_dir)


def _unpack(archive: Path, channel_dir: Path) -> Path:
    target = channel_dir.with_name(channel_dir.name + UNPACKED_SUFFIX)
    done = target / ".complete"
    if done.is_file():
        return target
    try:
        target.mkdir(exist_ok=True)
    except OSError:
        target = Path(tempfile.mkdtemp(prefix=f"tunec-{channel_dir.name}-"))
        done = target / ".complete"
    log.info("unpacking %s into %s", archive, target)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise EntryError(f"cannot unpack {archive}: {err}") from None
    done.touch()
    return target


def check_adapter_shapes(weights: Path, r: int, experts: int | None = None) -> int:
    """Check every LoRA matrix of a saved adapter: lora_A is (r, in), lora_B is (out, r). Returns how many.

    A wrong final save (for example an FSDP state dict gathered on one rank only) writes empty or 1-D tensors that
    PEFT loads without complaint and that merge into garbage. LoRA on fused expert parameters (PEFT's
    target_parameters) stacks one rank-r pair per expert: its rank dimension is r x `experts`.
    """
    ranks = {r, r * experts} if experts else {r}
    checked, bad = 0, []
    with safe_open(str(weights), framework="pt") as f:
        for name in f.keys():
            shape = tuple(f.get_slice(name).get_shape())
            if ".lora_A." in name:
                ok = len(shape) == 2 and shape[0] in ranks and shape[1] > 0
            elif ".lora_B." in name:
                ok = len(shape) == 2 and shape[1] in ranks and shape[0] > 0
            else:
                continue
            checked += 1
            if not ok:
                bad.append(f"{name} {list(shape)}")
    if bad:
        raise EntryError(f"the saved adapter {weights} has malformed LoRA tensors (r={r}): {', '.join(bad[:5])}")
    if checked == 0:
        raise EntryError(f"the saved adapter {weights} holds no LoRA tensors")
    return checked
