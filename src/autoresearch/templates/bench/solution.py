"""The code under study: a merge sort that hands small slices to insertion sort.

Editable. Keep `sort(xs) -> list` returning a new sorted list; the tests in
test_solution.py and the answer check in bench.py must still pass.
"""

from __future__ import annotations

INSERTION_THRESHOLD = 2  # slices this long or shorter go to insertion sort


def insertion_sort(xs: list[int]) -> list[int]:
    out = list(xs)
    for i in range(1, len(out)):
        item, j = out[i], i - 1
        while j >= 0 and out[j] > item:
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = item
    return out


def merge(left: list[int], right: list[int]) -> list[int]:
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def sort(xs: list[int]) -> list[int]:
    if len(xs) <= INSERTION_THRESHOLD:
        return insertion_sort(xs)
    mid = len(xs) // 2
    return merge(sort(xs[:mid]), sort(xs[mid:]))
