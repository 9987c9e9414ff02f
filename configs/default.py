# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Every configuration field, declared once with its default.

Experiment configs import this module and override a few fields; with
`lock_config=True` a misspelt override fails at once. Defaults follow the
paper's traffic-sign experiment (the authors' released trafficsigns_topk
config; docs/differences.md lists where this project departs from it).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The full set of fields with their defaults."""
  config = ml_collections.ConfigDict()
  config.seed = 42

  # Data (ptopk_patch_selection/input_pipeline.py, datasets/).
  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "synthetic_traffic_signs/small"  # TFDS name[/config]
  config.dataset.data_dir = "data/tfds"  # built TFDS datasets
  config.dataset.manual_dir = "data/downloads"  # user downloads, per dataset
  # TFDS split names, slices allowed ("train[:5000]": configs/cub.py).
  config.dataset.train_split = "train"
  config.dataset.eval_split = "test"
  config.dataset.image_size = (512, 512)  # (h, w) the model sees
  config.dataset.num_classes = 4
  # Augmentation: "none", "traffic" (pad + random crop + colour scaling),
  # "billiard" (pad + random crop), "cub" (resize, crop, flip).
  config.dataset.augmentation = "traffic"
  config.dataset.pad_pixels = 100  # random translation of up to this many px
  config.dataset.color_probability = 0.8  # random affine colour scaling
  config.dataset.color_scale = (0.8, 1.2)
  config.dataset.color_offset = (-0.1, 0.1)
  config.dataset.resize = 600  # cub: resize before cropping
  # cub: "pil_uint8" (PIL bilinear on uint8, antialiased) or "tf_float"
  # (tf.image.resize on floats, as released); input_pipeline.py.
  config.dataset.cub_resize = "pil_uint8"
  config.dataset.max_objects = 8  # object boxes per example, padded + mask
  config.dataset.num_threads = 2  # reader threads (decode + augment)
  config.dataset.prefetch_batches = 4  # batches read ahead
  config.batch_size = 32
  config.eval_batch_size = 32

  # Model (ptopk_patch_selection/models/).
  config.model = ml_collections.ConfigDict()
  config.model.name = "patchnet"  # "patchnet", "ntsnet", "whole_image"
  config.model.k = 5
  config.model.patch_size = 100
  config.model.downscale = 3
  config.model.scorer_has_se = False
  config.model.scorer_padding = "valid"  # "valid" (paper), "edge"
  config.model.patch_padding = "constant"  # "constant", "edge", "reflect"
  config.model.normalization = "minmax"  # "minmax", "identity", "softmax"
  config.model.normalization_epsilon = 1e-5
  # "perturbed", "sinkhorn", "hard", "random"
  config.model.selection = "perturbed"
  config.model.selection_eval = "hard"
  config.model.perturbed = ml_collections.ConfigDict()
  config.model.perturbed.num_samples = 500
  config.model.perturbed.gradient = "exact"  # "exact", "diagonal"
  config.model.perturbed.noise = "normal"  # "normal", "gumbel"
  # "none" (the paper), "leave_one_out", "antithetic", or "conditional":
  # unbiased like "none", with far less noise when d is large
  # (docs/operator.md).
  config.model.perturbed.variance_reduction = "conditional"
  config.model.perturbed.chunk_size = 16
  # One draw of the noise samples for the whole batch instead of one per
  # example: the same unbiased estimates per example, correlated across the
  # batch, b times less noise to draw (docs/operator.md).
  config.model.perturbed.shared_noise = False
  # Selections per example whose losses give the scorer's gradient with
  # model.train_patches="score_function".
  config.model.perturbed.loss_samples = 4
  config.model.sinkhorn = ml_collections.ConfigDict()
  config.model.sinkhorn.epsilon = 1e-4
  config.model.sinkhorn.num_iterations = 2000
  # "scaled" (ours: targets j / k in the scores' range [0, 1], epsilon
  # scaling; converges at eps 1e-4) or "released" (targets 0..k, every
  # iteration at the fixed epsilon, as released); sinkhorn_topk.py.
  config.model.sinkhorn.form = "scaled"
  config.model.soft_extractor = "matmul"  # "matmul", "scan"
  # Candidate patch (i, j): "released" (stride h // H', as released) or
  # "scorer" (centred where score (i, j) looked; patches.PatchGrid).
  config.model.patch_grid = "released"
  config.model.append_position = False
  # "ats_traffic", "resnet18", "resnet18_thin", "resnet50"
  config.model.feature_network = "ats_traffic"
  # ResNet stem: "standard" (symmetric padding, BN momentum 0.9, ReLU) or
  # "released" (TF "SAME" padding, stem BN momentum 0.99, no ReLU: for the
  # released code's or TF-converted weights); models/feature_networks.py.
  config.model.resnet_stem = "standard"
  # How the standard ResNet stem's input gradients are computed: "xla" or
  # "phases" (by input parity: the convolution's as one stride-1 convolution,
  # the max-pool's on the output grid; several times faster on CPUs, equal
  # up to rounding); models/phase_conv.py.
  config.model.stem_gradient = "xla"
  # "mean", "max", "sum_layernorm", "transformer"
  config.model.aggregator = "mean"
  config.model.transformer = ml_collections.ConfigDict()
  config.model.transformer.num_layers = 3
  config.model.transformer.num_heads = 8
  config.model.transformer.hidden_size = 256
  config.model.transformer.dropout = 0.1
  config.model.transformer.pooling = "sum"  # "sum", "mean", "max", "cls"
  # Training patches of a perturbed selection: "soft" (blends, the paper),
  # "sampled" (one sample's clean patches, straight-through gradient) or
  # "score_function" (perturbed.loss_samples samples' clean patches; the
  # scorer learns from their losses, see score_function.py).
  config.model.train_patches = "soft"
  config.model.hard_topk_probability = 0.0
  config.model.random_patch_probability = 0.0
  # PatchNet, training only: each candidate patch is kept with probability
  # 1 - patch_dropout (kept ones scaled by 1 / (1 - patch_dropout)) before
  # the soft patches blend them (released, never set there).
  config.model.patch_dropout = 0.0
  # "whole_image" baseline: the feature network on the image / this factor.
  config.model.whole_image_downscale = 1
  # Its head: "mlp" (Dense -> swish -> Dense, as PatchNet's) or "linear"
  # (one Dense on the features, as the released baseline).
  config.model.whole_image_head = "mlp"
  # .npz or Orbax directory for the feature network (models/pretrained.py).
  config.model.pretrained_checkpoint = ""
  # Module path of the checkpoint's subtree to load as the feature network,
  # e.g. "feature_network" of a whole PatchNet checkpoint; "" = the whole
  # checkpoint is the bare network (models/pretrained.py).
  config.model.pretrained_prefix = ""
  config.model.ntsnet = ml_collections.ConfigDict()
  # "none", "squeeze_excite_x", "squeeze_excite_d", "transformer"
  config.model.ntsnet.communication = "squeeze_excite_d"
  config.model.ntsnet.part_size = 224
  config.model.ntsnet.dropout = 0.5
  config.model.ntsnet.aggregation = "mean"  # "mean", "concat"

  # Selection noise: sigma decays linearly from sigma to sigma_end.
  config.sigma = 0.05
  config.sigma_end = 0.0
  # Noise scale of selection_eval="perturbed": None uses the training
  # sigma of the evaluated step, a number fixes it.
  config.sigma_eval = ml_collections.config_dict.placeholder(float)
  config.entropy_regularizer = 0.01  # weight of -entropy(softmax(raw scores))

  # Optimisation.
  config.optimizer = "adamw"  # "adamw", "sgd"
  config.learning_rate = 1e-4
  config.weight_decay = 1e-4  # decoupled, scaled by the learning rate
  config.momentum = 0.9  # sgd only
  # sgd: the (scheduled) learning rate scales the update "after_momentum"
  # (optax.sgd) or the gradient "before_momentum" (as released).
  config.sgd_learning_rate = "after_momentum"
  config.gradient_clip = 0.1  # element-wise value clipping; 0 disables
  # Regex of parameter paths ("head/logits/kernel") that are not trained.
  config.frozen_params = ""
  # ((regex, factor), ...): the learning rate of parameters whose path
  # matches a regex is factor x the schedule's (first match; released
  # scaling_learning_rate_by_regex), e.g. (("^scorer/", 0.1),).
  config.lr_scales = ()
  config.schedule = "cosine"  # "cosine", "piecewise"
  config.warmup_ratio = 0.1
  config.decay_at_steps = ()  # piecewise: multiply by decay_factor at these
  config.decay_factor = 0.1
  config.num_train_steps = 70_000
  # bfloat16 scorer, reader and aggregator (float32 parameters, Top-K,
  # BatchNorm statistics and loss): for GPUs and TPUs; slow on CPUs.
  config.half_precision = False

  # Logging, evaluation and checkpoints.
  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 5000
  config.max_nonfinite_steps = 10  # skipped (non-finite) steps before stopping
  config.num_image_summaries = 4
  # Experiment configs may change these fields but not add new ones.
  config.lock()
  return config
