"""The test suite (protected): the `checks` gate runs it before any change is kept."""

from __future__ import annotations

import random
import unittest

import solution


class SortTest(unittest.TestCase):
    def test_edge_cases(self) -> None:
        for xs in ([], [1], [2, 1], [3, 3, 3], [5, -1, 5, 0], list(range(50, 0, -1))):
            self.assertEqual(solution.sort(list(xs)), sorted(xs))

    def test_random_lists(self) -> None:
        rng = random.Random(7)
        for n in (2, 3, 17, 64, 65, 500):
            xs = [rng.randrange(-100, 100) for _ in range(n)]
            self.assertEqual(solution.sort(list(xs)), sorted(xs))

    def test_input_is_not_modified(self) -> None:
        xs = [3, 1, 2]
        solution.sort(xs)
        self.assertEqual(xs, [3, 1, 2])


if __name__ == "__main__":
    unittest.main()
