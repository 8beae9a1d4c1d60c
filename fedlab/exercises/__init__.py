"""The exercises of each lesson, one module per lesson, registered with :mod:`fedlab.checks`.

A module here builds :class:`fedlab.checks.Exercise` records (id, title, the
name of the learner's answer, its tests) and calls
:func:`fedlab.checks.register` at import. :data:`fedlab.checks.LESSON_MODULES`
says which module belongs to which lesson; modules are imported only when a
lesson's exercises are first asked for, so ``import fedlab`` stays light.

Lesson 99 (:mod:`fedlab.exercises.demo`) is not part of the course: it is the
grader's small, fast demo lesson used by the tests and the benchmark.
"""
