"""Generic audio-visual data machinery; every task's datasets live in its own package (``avadapt.tasks.<task>``).

media       PyAV decoding of a clip into T frames + a 16 kHz mono waveform; frame folders; the mp4 writer
fbank       Kaldi log-mel fbank, one normalised (F, L) image per segment (FbankConfig)
transforms  frames → normalised tensors from a timm data config (VideoTransform)
base        ClipDataset: what every registered dataset offers the generic data module; collate_av
cache       the prepared-clip cache format (cache.json + one safetensors file per video)
prepare     the one prepare runner (resumable, parallel, bad clips reported); tasks give the decode job
sampling    epoch-seeded shuffles and evaluation orders that keep a clip's items together
synthetic   what the synthetic datasets share (class looks and sounds, ids, split shares)
datamodule  AVDataModule: the one Lightning DataModule, which picks the dataset by name

Import from the modules themselves; importing the package loads none of them.
"""
