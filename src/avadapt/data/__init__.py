"""Generic audio-visual data machinery: decoding (``media``), spectrograms (``fbank``), frame transforms,
the dataset base and collate function (``base``), the prepared-clip cache and its runner (``cache``,
``prepare``), epoch-seeded sampling, shared synthetic pieces and the one Lightning data module.

Every task's datasets live in its own package (``avadapt.tasks.<task>``). Import from the modules themselves;
importing the package loads none of them.
"""
