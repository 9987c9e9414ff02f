# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the benchmark helpers (not of timings: those are never asserted)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import common
from benchmarks import released_baselines
from benchmarks import update_readme
from ptopk_patch_selection import patches
from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection.datasets import drawing
from ptopk_patch_selection.datasets import traffic_scene


def test_update_readme_replaces_only_marked_blocks(tmp_path):
  (tmp_path / "topk_op.md").write_text("| new |\n")
  text = ("intro\n<!-- results:topk_op -->\nold\n<!-- /results:topk_op -->\n"
          "<!-- results:missing -->\nkept\n<!-- /results:missing -->\n")
  updated = update_readme.update(text, str(tmp_path))
  assert "| new |" in updated and "old" not in updated
  assert "kept" in updated and updated.startswith("intro\n")


def test_update_pages_updates_the_docs_page_that_shows_a_table(tmp_path):
  results = tmp_path / "results"
  results.mkdir()
  (results / "learning.md").write_text(
      "| new |\n\n![curves](benchmarks/results/learning.png)\n")
  (tmp_path / "docs").mkdir()
  page = tmp_path / "docs" / "learning.md"
  page.write_text("# Learning\n<!-- results:learning -->\nold\n"
                  "<!-- /results:learning -->\nafter\n")
  readme = tmp_path / "README.md"
  readme.write_text("no tables here\n")
  changed = update_readme.update_pages(str(tmp_path), str(results))
  assert changed == ["docs/learning.md"]
  text = page.read_text()
  assert "| new |" in text and "old" not in text
  assert text.startswith("# Learning\n") and text.endswith("after\n")
  # The results' root-relative picture is rebased onto the docs page.
  assert "](../benchmarks/results/learning.png)" in text
  assert readme.read_text() == "no tables here\n"
  # A second run finds nothing to change.
  assert update_readme.update_pages(str(tmp_path), str(results)) == []


def test_every_results_block_is_in_one_page_and_has_its_results():
  shown = update_readme.shown_blocks()
  assert "topk_op" in shown and "learning" in shown
  for name, pages in shown.items():
    assert len(pages) == 1, f"results:{name} is in {pages}"
    assert os.path.exists(os.path.join(common.RESULTS_DIR, f"{name}.md")), (
        f"results:{name} is shown but benchmarks/results/{name}.md is missing")


def test_markdown_table_formats_floats():
  table = common.markdown_table(["a", "b"], [["x", 1.23456]])
  assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 1.23 |"]


def test_released_baselines_compute_the_same_forward():
  """The baseline differs from ours in its gradient, not its forward value."""
  scores = jax.random.normal(jax.random.key(0), (2, 12))
  ours = ptopk.perturbed_topk(scores, jax.random.key(1), k=3,
                              num_samples=50, sigma=0.0)
  released = released_baselines.released_perturbed_topk(
      scores, jax.random.key(1), k=3, num_samples=50, sigma=0.0)
  np.testing.assert_array_equal(ours, released)
  grid = patches.PatchGrid((20, 24), (2, 3), 9)
  images = jax.random.normal(jax.random.key(2), (2, 20, 24, 3))
  weights = jax.random.uniform(jax.random.key(3), (2, 3, 6))
  np.testing.assert_allclose(
      released_baselines.released_extract_patches_scan(images, weights, grid),
      patches.extract_patches_matmul(images, weights, grid), atol=1e-5)


def test_learning_variants_override_the_default():
  from benchmarks import learning  # pylint: disable=g-import-not-at-top
  config = learning.variant_config("zero_padding", seed=3, num_train_steps=10)
  assert (config.seed, config.num_train_steps) == (3, 10)
  assert config.model.patch_padding == "constant"
  assert config.model.scorer_padding == "valid"
  assert learning.variant_config("default", 0).model.patch_padding == "edge"
  for name in learning.VARIANTS:  # every override names a real field
    learning.variant_config(name, 0)
  assert learning.variant_config(
      "score_function", 0).model.train_patches == "score_function"
  transformer = learning.variant_config("billiard_transformer", 1)
  mean = learning.variant_config("billiard_mean", 1)
  assert transformer.dataset.name == "synthetic_billiard/paper"
  assert (transformer.model.aggregator, mean.model.aggregator) == (
      "transformer", "mean")


def test_learning_summary_averages_over_seeds():
  from benchmarks import learning  # pylint: disable=g-import-not-at-top
  runs = [dict(variant="a", seed=seed, steps=500, accuracy=accuracy,
               coverage=0.5, seconds_per_step=1.0)
          for seed, accuracy in ((0, 0.6), (1, 0.8))]
  _, rows = learning.summarize(runs)
  assert rows[0][:3] == ["a", "0,1", "500"]
  np.testing.assert_allclose(rows[0][3:5], [0.7, 0.2])


def test_learning_reruns_replace_only_their_rows():
  from benchmarks import learning  # pylint: disable=g-import-not-at-top
  recorded = [dict(variant=v, seed=s, accuracy=0.1)
              for v in ("a", "b") for s in (0, 1)]
  rerun = [dict(variant="a", seed=1, accuracy=0.9),
           dict(variant="c", seed=0, accuracy=0.5)]
  merged = learning.merge_runs(recorded, rerun)
  assert sorted((r["variant"], r["seed"], r["accuracy"]) for r in merged) == [
      ("a", 0, 0.1), ("a", 1, 0.9), ("b", 0, 0.1), ("b", 1, 0.1),
      ("c", 0, 0.5)]


def test_reader_noise_patches_show_the_deciding_sign():
  from benchmarks import reader_noise  # pylint: disable=g-import-not-at-top
  spec = traffic_scene.SceneSpec(128, 128, sign_diameter=(16, 22), margin=4)
  signs, randoms, labels = reader_noise.make_patches(8, 0, spec, 40)
  assert signs.shape == randoms.shape == (8, 40, 40, 3)
  np.testing.assert_array_equal(labels, [0, 1, 2, 3] * 2)
  for index in range(8):
    image, objects = traffic_scene.render_scene(
        spec, index % 4, drawing.example_rng(0, 0, index))
    sign, _, _ = reader_noise.scene_patches(index, 0, spec, 40)
    np.testing.assert_array_equal(sign, signs[index])
    pixels = np.asarray(image)
    # The patch is a window of the image holding a whole ring sign.
    found = [
        (y, x) for y in range(128 - 39) for x in range(128 - 39)
        if np.array_equal(pixels[y:y + 40, x:x + 40], sign)]
    assert found
    y, x = found[0]
    inside = [o for o in objects
              if o["bbox"][0] * 128 >= y and o["bbox"][1] * 128 >= x and
              o["bbox"][2] * 128 <= y + 40 and o["bbox"][3] * 128 <= x + 40]
    if index % 4:
      assert any(o["is_target"] for o in inside)
    else:
      assert inside
  rng = np.random.default_rng(0)
  for coverage, expected in ((1.0, signs), (0.0, randoms)):
    patches, batch_labels = reader_noise.mixed_batch(
        rng, signs, randoms, labels, 6, coverage)
    for patch, label in zip(patches, batch_labels):
      assert any(np.array_equal(patch, e) and label == labels[i]
                 for i, e in enumerate(expected))


def test_selection_errors_count_whole_objects_per_example():
  """A 100 px image, 40 px patches; two examples of three objects (the first
  two targets), the second with its last row padding."""
  import collections  # pylint: disable=g-import-not-at-top
  from benchmarks import selection_errors  # pylint: disable=g-import-not-at-top
  def box(y, x, size=10):  # pixel corner -> normalised box
    return [y / 100, x / 100, (y + size) / 100, (x + size) / 100]
  boxes = np.array([[box(5, 5), box(50, 50), box(32, 32)],
                    [box(5, 5), box(38, 0), box(0, 0)]], np.float32)
  top = np.array([[0, 45], [0, 60]])  # patches at (0, 0) and (45, 45) ...
  left = np.array([[0, 45], [0, 60]])  # ... and (0, 0), (60, 60)
  inside = selection_errors.whole_inside(boxes, top, left, 40, (100, 100))
  np.testing.assert_array_equal(inside, [
      [[True, False], [False, True], [False, False]],  # (32, 32) is cut
      [[True, False], [False, False], [True, False]]])  # (38, 0): 38+10 > 40
  batch = {"box_mask": np.array([[True] * 3, [True, True, False]]),
           "is_target": np.array([[True, True, False]] * 2),
           "mask": np.array([True, True])}
  counts, slots = collections.Counter(), collections.Counter()
  selection_errors.tally(inside, batch, np.array([True, False]), counts,
                         slots)
  assert counts == {(2, 0, True): 1, (1, 0, False): 1}
  assert slots == {2: 1, 1: 1}
  assert "| 1 | 0 | 0 | 1 | 1 |" in selection_errors.table(counts)


@pytest.mark.usefixtures("fast_compile")
def test_model_speed_inference_writes_json_and_png(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from benchmarks import model_speed  # pylint: disable=g-import-not-at-top
  results = model_speed.run_inference(
      [64, 80], batch=1, k=2, patch_size=16, downscale=2,
      feature_network="ats_traffic", repeats=1, max_time_size=64,
      results_dir=str(tmp_path), name="speed")
  written = json.loads((tmp_path / "speed.json").read_text())
  assert [row["size"] for row in written["rows"]] == [64, 80]
  timed, untimed = written["rows"]
  # The ratios are of the right times, the right way round.
  patch, whole = timed["patchnet"], timed["whole_image"]
  assert timed["speedup"] == pytest.approx(whole["time_s"] / patch["time_s"])
  assert timed["selection_overhead"] == pytest.approx(
      patch["time_s"] / timed["features_time_s"])
  assert patch["samples_per_s"] == pytest.approx(1 / patch["time_s"])  # b=1
  for row in (timed, untimed):
    assert row["memory_ratio"] == pytest.approx(
        row["whole_image"]["program_mb"] / row["patchnet"]["program_mb"])
  # Above max_time_size only the memory is measured.
  assert untimed["patchnet"]["time_s"] is None
  assert untimed["whole_image"]["time_s"] is None
  assert untimed["speedup"] is None and untimed["selection_overhead"] is None
  # The whole image's program grows with the image.
  assert (untimed["whole_image"]["program_mb"] >
          timed["whole_image"]["program_mb"])
  assert written["not_timed_sizes"] == [80]
  assert (tmp_path / "speed.png").read_bytes()[:4] == b"\x89PNG"
  assert "selection overhead" in (tmp_path / "speed.md").read_text()
  assert results["png"] == str(tmp_path / "speed.png")


@pytest.mark.slow
@pytest.mark.usefixtures("fast_compile")
def test_step_cost_times_every_part_against_the_train_step(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from benchmarks import step_cost  # pylint: disable=g-import-not-at-top
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  config = synthetic.get_config()
  config.model.pretrained_checkpoint = ""
  config.dataset.image_size = (128, 128)
  config.model.update(k=2, patch_size=32, downscale=4)  # 3x3 candidates
  config.model.perturbed.num_samples = 4
  config.batch_size = 2
  step_cost.run(config, repeats=1, results_dir=str(tmp_path))
  rows = json.loads((tmp_path / "step_cost.json").read_text())["rows"]
  assert [row["part"] for row in rows] == [
      'train step, model.stem_gradient="xla"',
      'train step, model.stem_gradient="phases"',
      "reader forward", "reader + parameter gradient",
      "reader + parameter and patch gradient", "stem input gradient",
      "stem input gradient by phases", "stem max-pool backward",
      "stem max-pool backward by phases"]
  for row in rows:  # every part as a fraction of the plain train step
    assert row["fraction"] == pytest.approx(row["seconds"] /
                                            rows[0]["seconds"])
  assert rows[0]["fraction"] == 1.0
  assert '| train step, model.stem_gradient="xla" |' in (
      tmp_path / "step_cost.md").read_text()
  config.model.feature_network = "ats_traffic"
  with pytest.raises(ValueError, match="the stem rows need a ResNet"):
    step_cost.run(config, repeats=1, results_dir=str(tmp_path))


@pytest.mark.usefixtures("fast_compile")
def test_topk_peers_give_figures_or_a_reason(monkeypatch):
  """Every peer row has its figures or says why not; norm ratios are scale."""
  from benchmarks import topk_op  # pylint: disable=g-import-not-at-top

  # pylint: disable=protected-access
  def missing():
    raise topk_op._NotInstalled(topk_op.OTT_MISSING)

  # As without the [benchmark] extra (and fast: OTT compiles slowly).
  monkeypatch.setattr(topk_op, "_ott_soft_sort", missing)
  k, num_samples = 2, 8
  ours = topk_op._operator("exact, conditional", k, num_samples,
                           jax.random.key(1))
  # pylint: enable=protected-access

  def doubled(s):  # the same forward, twice the gradient
    y = ours(s)
    return 2 * y - jax.lax.stop_gradient(y)

  extra = {"ours, gradient x2": dict(build=lambda: doubled, output="slots",
                                     note="test"),
           "ours as a mask": dict(build=lambda: lambda s: ours(s).sum(1),
                                  output="mask", note="test")}
  rows = topk_op.benchmark_peers(
      dict(batch=2, image_size=(24, 32), grid=(3, 4), k=k),
      num_samples=num_samples, examples=2, reference_samples=4000,
      patch_size=8, repeats=1, extra_peers=extra)
  by_name = {row["peer"]: row for row in rows}
  specs = topk_op.peer_specs(k, num_samples, jax.random.key(1))
  assert set(by_name) == set(specs) | set(extra)
  for row in rows:
    if row["output"] in ("floor", "forward"):
      assert row["time_s"] > 0 and row["reason"] is None, row
    elif row["reason"] is None:  # all figures
      assert all(row[field] is not None for field in (
          "time_s", "temp_mb", "cosine", "norm_ratio", "mask_distance")), row
      assert (row["distance"] is None) == (row["output"] == "mask"), row
    else:
      assert row["reason"].strip(), row
  for name, row in by_name.items():
    if name.startswith("ott"):
      assert row["reason"] == "not installed: pip install ott-jax"
  mine, scaled = by_name[topk_op.OURS], by_name["ours, gradient x2"]
  assert abs(mine["norm_ratio"] - 1) < 0.1 and mine["cosine"] > 0.9
  assert abs(scaled["norm_ratio"] - 1) > 0.1
  assert scaled["cosine"] == pytest.approx(mine["cosine"])
  rbg = by_name[topk_op.OURS_RBG]  # the same estimator on other noise
  assert rbg["cosine"] > 0.9 and rbg["distance"] != mine["distance"]
  mask = by_name["ours as a mask"]
  assert mask["mask_distance"] == pytest.approx(mine["mask_distance"])
  assert mask["reason"] is None and mask["cosine"] is not None
  assert by_name["straight-through (softmax)"]["distance"] < 1e-6
  assert by_name["straight-through (softmax)"]["mask_distance"] < 1e-6
  assert by_name[topk_op.FLOOR]["x_floor"] == 1
  table = topk_op.peers_table({"tiny": rows})
  assert "| tiny | ours, exact conditional |" in table
  assert "**not installed: pip install ott-jax**" in table
