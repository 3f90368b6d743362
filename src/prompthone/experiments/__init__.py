"""Experiments: runs that reproduce a paper's side results rather than optimize a program.

They sit above `optimize/` and borrow its parts; nothing in the library depends on them.
"""
