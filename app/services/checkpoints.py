"""Signed checkpoints of the ledgers' chains, kept where the database cannot
rewrite them: one append-only file per chain (``<chain>.jwsl``), one ES256 JWS
per line, signed with the receipt key. Only the newest line is read back."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from app.security.signing import SignatureInvalid, Signer

CHECKPOINT_TYPE = "chain-checkpoint"
# The newest line is within this many bytes of the end (a line is ~500 bytes).
TAIL_BYTES = 8192


@dataclass(frozen=True)
class Checkpoint:
    chain: str
    seal: int  # the newest seal's number
    mac: str  # and its MAC
    records: int  # rows sealed in the chain up to that seal
    last_id: int  # the highest row id sealed
    at: str  # ISO 8601, when it was written


class CheckpointUnreadable(Exception):
    """The newest checkpoint exists but is not one we signed."""


class CheckpointStore:
    def __init__(self, folder: Path, signer: Signer) -> None:
        self.folder, self._signer = folder, signer

    def _path(self, chain: str) -> Path:
        return self.folder / f"{chain}.jwsl"

    def append(self, checkpoint: Checkpoint) -> Checkpoint:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = self._signer.sign({"typ": CHECKPOINT_TYPE, **asdict(checkpoint)})
        # O_APPEND: a writer adds lines and never rewrites one (use a WORM or
        # append-only mount, chattr +a, for the same at the storage).
        fd = os.open(self._path(checkpoint.chain), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{token}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return checkpoint

    def latest(self, chain: str) -> Checkpoint | None:
        path = self._path(chain)
        if not path.exists():
            return None
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
            lines = [line for line in handle.read().splitlines() if line.strip()]
        if not lines:
            return None
        try:
            claims = self._signer.verify(lines[-1].decode("ascii"))
        except (SignatureInvalid, UnicodeDecodeError, ValueError) as exc:
            raise CheckpointUnreadable(f"the newest checkpoint in {path} is not ours") from exc
        if claims.get("typ") != CHECKPOINT_TYPE or claims.get("chain") != chain:
            raise CheckpointUnreadable(f"the newest line of {path} is not a {chain} checkpoint")
        return Checkpoint(
            chain=chain,
            seal=int(claims["seal"]),
            mac=str(claims["mac"]),
            records=int(claims["records"]),
            last_id=int(claims["last_id"]),
            at=str(claims["at"]),
        )
