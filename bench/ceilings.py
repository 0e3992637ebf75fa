"""The ceilings that are not an HTTP endpoint, on every core at once with
nothing else running: argon2id verifications per second at the configured
parameters (what password sign-in can reach at most) and ES256 signature
verifications per second (passkeys, for reference)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from app.settings import Settings
from bench.login_throughput import _verify_loop


def argon2_params(settings: Settings) -> tuple[int, int, int]:
    return (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)


def _es256_loop(seconds: float) -> int:
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 200  # authenticator data + client data hash, roughly
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        done += 1
    return done


def _on_every_core(work: Callable[..., int], *args: object, seconds: float) -> float:
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        futures = [pool.submit(work, *args, seconds) for _ in range(cores)]
        return sum(f.result() for f in futures) / seconds


def argon2_per_second(settings: Settings, seconds: float) -> float:
    return _on_every_core(_verify_loop, argon2_params(settings), seconds=seconds)


def es256_per_second(seconds: float) -> float:
    return _on_every_core(_es256_loop, seconds=seconds)
