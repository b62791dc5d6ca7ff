"""Where voices live: Redis (shared by replicas, survives restarts) or a local directory.

A voice is three things: its metadata (JSON), its reference clip (16-bit WAV, 24 kHz) and, per
engine fingerprint, the conditionals that engine computed from the clip (opaque bytes). Keeping
the clip means a replica running another engine or model can compute its own conditionals.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from services.common.errors import CodedError
from services.common.validate import ID_PATTERN, InputError, identifier


class VoiceError(CodedError):
    """A voice request the store refuses (bad id, unknown voice, bad reference audio)."""


class OutsideStore(VoiceError):
    """A voice id whose path would leave the store's directory (refused before any I/O)."""


def check_id(voice_id: object) -> str:
    """The voice id rule, `validate.identifier` (a full match), as a VoiceError so every
    transport already answers it; the backends call it again before building a path or key."""
    try:
        return identifier(voice_id, "voice_id")
    except InputError as exc:
        raise VoiceError(exc.code, exc.message) from None


class StoreUnavailable(CodedError):
    """The backing store cannot be reached (Redis down): code voice_store_unavailable, HTTP 503."""

    status = 503

    def __init__(self, message: str = "voice store unavailable") -> None:
        super().__init__("voice_store_unavailable", message)


@dataclass
class VoiceMeta:
    id: str
    name: str
    created_at: float
    duration_s: float
    sample_rate: int = 24000

    def to_dict(self) -> dict:
        return asdict(self)


class Backend(ABC):
    kind: str = ""

    @abstractmethod
    async def put(self, meta: VoiceMeta, wav: bytes, conditionals: dict[str, bytes]) -> None: ...

    @abstractmethod
    async def put_conditionals(self, voice_id: str, fingerprint: str, blob: bytes) -> None: ...

    @abstractmethod
    async def get_meta(self, voice_id: str) -> VoiceMeta | None: ...

    @abstractmethod
    async def get_wav(self, voice_id: str) -> bytes | None: ...

    @abstractmethod
    async def get_conditionals(self, voice_id: str, fingerprint: str) -> bytes | None: ...

    @abstractmethod
    async def list(self) -> list[VoiceMeta]: ...

    @abstractmethod
    async def delete(self, voice_id: str) -> bool: ...

    async def close(self) -> None:  # noqa: B027 (optional hook)
        pass

    async def unavailable(self) -> str | None:
        """Why the store cannot take registrations now (for /ready), or None when it can."""
        return None


class RedisBackend(Backend):
    """Keys: `tts:voice:<id>` (hash: meta, wav, cond:<fingerprint>) and the set `tts:voices`.
    Short socket timeouts so a dead Redis fails a request in about a second, not a minute.
    Every key is built by `_key`, which re-validates the id, so no id can reach another key space."""

    kind = "redis"
    PREFIX = "tts:voice:"
    INDEX = "tts:voices"

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0, retry_on_timeout=False)

    def _key(self, voice_id: str) -> str:
        return self.PREFIX + check_id(voice_id)

    async def _call(self, coro):
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            return await coro
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"voice store (Redis) unreachable: {type(exc).__name__}") from exc

    async def put(self, meta: VoiceMeta, wav: bytes, conditionals: dict[str, bytes]) -> None:
        key = self._key(meta.id)
        mapping = {"meta": json.dumps(meta.to_dict()), "wav": wav}
        mapping.update({f"cond:{fp}": blob for fp, blob in conditionals.items()})

        async def write():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=mapping)
                pipe.sadd(self.INDEX, meta.id)
                await pipe.execute()

        await self._call(write())

    async def put_conditionals(self, voice_id: str, fingerprint: str, blob: bytes) -> None:
        await self._call(self._redis.hset(self._key(voice_id), f"cond:{fingerprint}", blob))

    async def get_meta(self, voice_id: str) -> VoiceMeta | None:
        raw = await self._call(self._redis.hget(self._key(voice_id), "meta"))
        return VoiceMeta(**json.loads(raw)) if raw else None

    async def get_wav(self, voice_id: str) -> bytes | None:
        return await self._call(self._redis.hget(self._key(voice_id), "wav"))

    async def get_conditionals(self, voice_id: str, fingerprint: str) -> bytes | None:
        return await self._call(self._redis.hget(self._key(voice_id), f"cond:{fingerprint}"))

    async def list(self) -> list[VoiceMeta]:
        raw_ids = await self._call(self._redis.smembers(self.INDEX))
        ids = sorted(i for i in (r.decode(errors="replace") for r in raw_ids) if ID_PATTERN.fullmatch(i))
        metas = [await self.get_meta(i) for i in ids]
        return [m for m in metas if m is not None]

    async def delete(self, voice_id: str) -> bool:
        key = self._key(voice_id)

        async def remove():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(self.INDEX, voice_id)
                deleted, _ = await pipe.execute()
            return bool(deleted)

        return await self._call(remove())

    async def unavailable(self) -> str | None:
        try:
            await self._call(self._redis.ping())
        except StoreUnavailable as exc:
            return str(exc)
        return None

    async def close(self) -> None:
        await self._redis.aclose()


class DirectoryBackend(Backend):
    """`<dir>/<id>/meta.json`, `reference.wav`, `cond-<fingerprint hash>.bin`; file I/O off the loop.

    Every path comes from `_path_for`, which validates the id (the one identifier rule) and then
    checks that the resolved path (symlinks followed) is a direct child of the resolved store
    root: a traversal needs both checks to fail at once."""

    kind = "directory"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path_for(self, voice_id: str, prefix: str = "", suffix: str = "") -> Path:
        name = prefix + check_id(voice_id) + suffix
        root = self.root.resolve()
        path = (root / name).resolve()
        if path.parent != root or path.name != name:
            raise OutsideStore("invalid_voice_id", "voice_id does not name a folder inside the voice store")
        return path

    def _dir(self, voice_id: str) -> Path:
        return self._path_for(voice_id)

    @staticmethod
    def _cond_name(fingerprint: str) -> str:
        import hashlib

        return "cond-" + hashlib.sha1(fingerprint.encode()).hexdigest()[:16] + ".bin"

    async def put(self, meta: VoiceMeta, wav: bytes, conditionals: dict[str, bytes]) -> None:
        final = self._dir(meta.id)
        staging = self._path_for(meta.id, prefix=".", suffix=".partial")

        def write():
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            (staging / "meta.json").write_text(json.dumps(meta.to_dict()))
            (staging / "reference.wav").write_bytes(wav)
            for fp, blob in conditionals.items():
                (staging / self._cond_name(fp)).write_bytes(blob)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)

        await asyncio.to_thread(write)

    async def put_conditionals(self, voice_id: str, fingerprint: str, blob: bytes) -> None:
        path = self._dir(voice_id) / self._cond_name(fingerprint)
        if path.parent.exists():
            await asyncio.to_thread(path.write_bytes, blob)

    async def _read(self, path: Path) -> bytes | None:
        return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)

    async def get_meta(self, voice_id: str) -> VoiceMeta | None:
        raw = await self._read(self._dir(voice_id) / "meta.json")
        return VoiceMeta(**json.loads(raw)) if raw else None

    async def get_wav(self, voice_id: str) -> bytes | None:
        return await self._read(self._dir(voice_id) / "reference.wav")

    async def get_conditionals(self, voice_id: str, fingerprint: str) -> bytes | None:
        return await self._read(self._dir(voice_id) / self._cond_name(fingerprint))

    async def list(self) -> list[VoiceMeta]:
        if not self.root.exists():
            return []
        ids = sorted(
            p.name
            for p in self.root.iterdir()
            if ID_PATTERN.fullmatch(p.name) and p.is_dir() and not p.is_symlink()  # never follow a link out
        )
        metas = [await self.get_meta(i) for i in ids]
        return [m for m in metas if m is not None]

    async def delete(self, voice_id: str) -> bool:
        path = self._dir(voice_id)
        if not path.exists():
            return False
        if path.is_symlink() or not path.is_dir():
            return False  # only ever remove a real voice folder inside the store
        await asyncio.to_thread(shutil.rmtree, path, True)
        return True
