"""Workflows over the execution core: the notebook API (`api`), `convbench tune` (`tune`,
with its end-to-end variants in `build` and `variants`), `convbench selftest` and the
interference calibration."""
