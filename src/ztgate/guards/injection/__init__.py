"""Result scanning for injected instructions: the built-in detector, an ML classifier, the checks.

`detector.scan_text` / `scan_value` are the stable entry points other guards
reuse (tool descriptions are scanned with the same detector).
"""
