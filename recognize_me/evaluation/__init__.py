"""In: the trained models' test predictions. Out: metrics, the comparative report.html and its plots.
"""
