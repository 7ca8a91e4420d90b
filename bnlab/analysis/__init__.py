"""The analysis wing: logged runs -> a study frame -> claims decided with their statistics.

Reads the run store or the committed CSVs, never trains; hands typed results to bnlab.views.
Nothing here imports bnlab.views, and no training module imports this package.
"""
