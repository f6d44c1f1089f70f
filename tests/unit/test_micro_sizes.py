"""Microbenchmark sizes as nccl-tests and OSU write them (K, M, G 1024-based), ranges and step factors."""

import pytest

from bench.micro.sizes import parse_range, parse_size, sizes_between


def test_sizes_are_1024_based_with_or_without_b():
    assert parse_size("8") == 8 and parse_size("64K") == 65536 and parse_size("64k") == 65536
    assert parse_size("1M") == parse_size("1MB") == parse_size("1MiB") == 1_048_576
    assert parse_size(" 2G ") == 2 << 30
    for bad in ("", "1.5M", "1T", "M", "-4", "1 M B"):
        with pytest.raises(ValueError, match="expected bytes"):
            parse_size(bad)


def test_ranges_and_factors():
    assert parse_range("8:4M", 1, 2) == (8, 4 << 20)
    assert parse_range(":64K", 8, 99) == (8, 65536) and parse_range("1K:", 8, 99) == (1024, 99)
    with pytest.raises(ValueError, match="MIN:MAX"):
        parse_range("64K", 8, 99)
    assert sizes_between(8, 4096) == [8 << i for i in range(10)]
    assert sizes_between(8, 8192, 4) == [8, 32, 128, 512, 2048, 8192]
    assert sizes_between(1, 16) == [4, 8, 16] and sizes_between(6, 100, 10) == [8, 80, 100]
    # -b 8 -e 4M -f 4: 8 x 4^9 = 2M, then 8M would pass 4M: 4M is measured last (it was silently left out)
    assert sizes_between(8, 4 << 20, 4)[-2:] == [2 << 20, 4 << 20] and len(sizes_between(8, 4 << 20, 4)) == 11
    assert sizes_between(8, 1001)[-1] == 1000  # whole float32s
    with pytest.raises(ValueError, match="factor"):
        sizes_between(8, 64, 1)


def test_block_sizes_and_bus_factors():
    from bench.micro.blocks import block_sizes, bus_factor

    assert block_sizes([4, 8, 100, 4096], 3) == [12, 96, 4092]  # whole float32 blocks, duplicates dropped
    assert bus_factor("allreduce", 4) == 1.5 and bus_factor("allgather", 4) == 0.75
    assert bus_factor("reduce-scatter", 1) == 0 and bus_factor("broadcast", 8) == 1


def test_bandwidths_keep_three_significant_digits_in_fixed_notation():
    """A small message's bandwidth used to print 0.000 GB/s."""
    from bench.micro.harness import significant

    assert [significant(x) for x in (0.002134, 0.0000456, 1.23456, 123.456, 0.0)] == [
        "0.00213", "0.0000456", "1.235", "123.456", "0.000"]  # fmt: skip
