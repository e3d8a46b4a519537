"""convbench.measure.flush and convbench.measure.caches: cold-mode buffers sized from the
cache sizes read in one place."""

import pytest

from convbench.measure import flush as flush_module
from convbench.measure.caches import cpu_llc_bytes, parse_cache_size
from convbench.measure.flush import CacheFlush, flush_size_bytes, make_flush

MS = 1_000_000  # ns


def noop():
    pass


# --- cache flush ------------------------------------------------------------------------------


def write_cache(root, index, level, kind, size):
    d = root / f"index{index}"
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_cpu_llc_from_sysfs(tmp_path):
    write_cache(tmp_path, 0, 1, "Data", "32K")
    write_cache(tmp_path, 1, 1, "Instruction", "32K")
    write_cache(tmp_path, 2, 2, "Unified", "1024K")
    write_cache(tmp_path, 3, 3, "Unified", "32768K")
    assert cpu_llc_bytes(tmp_path) == 32 * 2**20
    missing = tmp_path / "missing"  # then glibc's sysconf answers, or nothing does
    assert cpu_llc_bytes(missing) is None or cpu_llc_bytes(missing) > 0


@pytest.mark.parametrize(("text", "size"), [("32K", 32768), ("8M", 8 * 2**20), ("4096", 4096)])
def test_parse_cache_size(text, size):
    assert parse_cache_size(text) == size


def test_cpu_flush_size_is_twice_the_llc_or_the_fallback(monkeypatch):
    monkeypatch.setattr(flush_module, "cpu_llc_bytes", lambda: 3 * 2**20)
    assert flush_size_bytes("cpu") == 6 * 2**20
    monkeypatch.setattr(flush_module, "cpu_llc_bytes", lambda: None)
    assert flush_size_bytes("cpu") == 2 * flush_module.DEFAULT_CPU_LLC_BYTES


def test_cpu_flush_writes_its_buffer(monkeypatch):
    monkeypatch.setattr(flush_module, "cpu_llc_bytes", lambda: 4096)
    flush = make_flush("cpu")
    assert isinstance(flush, CacheFlush)
    assert (flush.device, flush.size_bytes, flush.buffer.numel()) == ("cpu", 8192, 8192)
    flush()
    flush()
    assert bool((flush.buffer == 2).all())
