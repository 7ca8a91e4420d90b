"""The views wing: what a reader sees (figures, results/REPORT.md), drawn from what
bnlab.analysis hands over. Views import analysis, never the reverse; no statistics here.
"""
