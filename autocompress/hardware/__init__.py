"""Where the work runs: the CPU latency is measured on (:mod:`.cpu`: ISA, int8 kernel, fingerprint) and the device
fine-tuning runs on (:mod:`.device`: ``--device cpu | cuda | auto``).

Import from the modules; this package re-exports nothing so that importing one never loads the other.
"""

__all__: list[str] = []
