"""The first-boot console wizard on tty1 (Textual).

Filled in by the first-boot issue; the package exists so the distribution's layout is fixed.
"""
