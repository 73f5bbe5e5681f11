"""`kdns lint`: the mistakes in manifests that DNS would otherwise keep quiet about.

kdns.lint.checks holds the checks (pure); kdns.lint.command reads the files and prints what
they find. `kdns serve --manifests` runs the same checks as it reads its files
(kdns.sources.manifests) and logs what they find as warnings.
"""
