# Worked examples for the completion-mode exercise prompt (`exercise_completion.j2`): each job
# shows the teacher a few of these, drawn by its seed, and the teacher continues the file with a
# new function in the same shape: a topic comment, a typed signature, a docstring with >>>
# examples, then the body. Written for Syllabus (not taken from any benchmark); tests check
# that every example passes its own doctests.

# Topic: string methods
def count_vowels(text: str) -> int:
    """Return how many vowels (a, e, i, o, u) are in text, ignoring case.
    >>> count_vowels("Hello")
    2
    >>> count_vowels("sky")
    0
    """
    return sum(1 for letter in text.lower() if letter in "aeiou")


# Topic: lists
def running_total(numbers: list[int]) -> list[int]:
    """Return the running totals of numbers: each item is the sum of the items up to it.
    >>> running_total([1, 2, 3])
    [1, 3, 6]
    >>> running_total([])
    []
    """
    totals = []
    total = 0
    for number in numbers:
        total += number
        totals.append(total)
    return totals


# Topic: dictionaries
def letter_counts(word: str) -> dict[str, int]:
    """Return a dictionary mapping each letter of word to how many times it appears.
    >>> letter_counts("noon")
    {'n': 2, 'o': 2}
    >>> letter_counts("")
    {}
    """
    counts = {}
    for letter in word:
        counts[letter] = counts.get(letter, 0) + 1
    return counts


# Topic: for loops
def largest_gap(values: list[int]) -> int:
    """Return the largest difference between two neighbouring values, or 0 if there are fewer
    than two values.
    >>> largest_gap([3, 8, 6, 15])
    9
    >>> largest_gap([4])
    0
    """
    gap = 0
    for index in range(1, len(values)):
        gap = max(gap, abs(values[index] - values[index - 1]))
    return gap


# Topic: conditionals
def ticket_price(age: int) -> int:
    """Return the ticket price for a visitor of the given age: 0 under 4, 5 under 16, else 12.
    >>> ticket_price(2)
    0
    >>> ticket_price(10)
    5
    >>> ticket_price(40)
    12
    """
    if age < 4:
        return 0
    if age < 16:
        return 5
    return 12


# Topic: list comprehensions
def squares_of_odds(numbers: list[int]) -> list[int]:
    """Return the squares of the odd numbers in numbers, in their original order.
    >>> squares_of_odds([1, 2, 3, 4, 5])
    [1, 9, 25]
    >>> squares_of_odds([2, 4])
    []
    """
    return [n * n for n in numbers if n % 2 == 1]


# Topic: functions and return values
def clamp(value: int, low: int, high: int) -> int:
    """Return value limited to the range from low to high.
    >>> clamp(15, 0, 10)
    10
    >>> clamp(-3, 0, 10)
    0
    >>> clamp(7, 0, 10)
    7
    """
    return max(low, min(value, high))


# Topic: variables and assignment
def swap_ends(items: list[str]) -> list[str]:
    """Return a copy of items with the first and the last item exchanged.
    >>> swap_ends(["a", "b", "c"])
    ['c', 'b', 'a']
    >>> swap_ends(["x"])
    ['x']
    """
    result = list(items)
    if result:
        first, last = result[0], result[-1]
        result[0], result[-1] = last, first
    return result


# Topic: while loops
def digit_sum(number: int) -> int:
    """Return the sum of the decimal digits of a non-negative number.
    >>> digit_sum(4096)
    19
    >>> digit_sum(0)
    0
    """
    total = 0
    while number > 0:
        total += number % 10
        number //= 10
    return total


# Topic: string methods
def initials(name: str) -> str:
    """Return the capitalised first letters of the words in name, joined without spaces.
    >>> initials("ada lovelace")
    'AL'
    >>> initials("guido van rossum")
    'GVR'
    """
    return "".join(word[0].upper() for word in name.split())
