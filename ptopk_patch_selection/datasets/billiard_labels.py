# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Label functions of the billiard task (paper section 4.2; no TensorFlow).

A scene is a list of balls, each a dict with "position" (index 0 is the
horizontal image coordinate x, growing to the right), "number" (1-9) and
"color". `LABEL_FUNCTIONS[name]` maps a scene to a class in
range(NUM_CLASSES[name]).
"""

_MIN_COLORS = ("green", "blue", "purple")
_MAX_COLORS = ("yellow", "red", "orange")


def _by_x(balls):
  return sorted(balls, key=lambda ball: ball["position"][0])


def rightmost_number(balls) -> int:
  """Number of the rightmost ball, minus 1."""
  return _by_x(balls)[-1]["number"] - 1


def max_left_right(balls) -> int:
  """max(number of the leftmost ball, number of the rightmost ball) - 1."""
  ordered = _by_x(balls)
  return max(ordered[0]["number"], ordered[-1]["number"]) - 1


def sum_all_modulo10(balls) -> int:
  """Sum of all numbers, modulo 10."""
  return sum(ball["number"] for ball in balls) % 10


def left_color_min_max(balls) -> int:
  """min (leftmost green/blue/purple) or max (yellow/red/orange) number - 1."""
  color = _by_x(balls)[0]["color"]
  numbers = [ball["number"] for ball in balls]
  if color in _MIN_COLORS:
    return min(numbers) - 1
  if color in _MAX_COLORS:
    return max(numbers) - 1
  raise ValueError(f"Leftmost ball colour {color!r} is in neither "
                   f"{_MIN_COLORS} nor {_MAX_COLORS}.")


LABEL_FUNCTIONS = {
    "max-left-right": max_left_right,
    "rightmost-number": rightmost_number,
    "sum-all-modulo10": sum_all_modulo10,
    "left-color-min-max": left_color_min_max,
}
NUM_CLASSES = {
    "max-left-right": 9,
    "rightmost-number": 9,
    "sum-all-modulo10": 10,
    "left-color-min-max": 9,
}
