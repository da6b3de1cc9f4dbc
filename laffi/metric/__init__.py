"""The SQuAD v2 scorer as an `evaluate` metric module.

Usage:  evaluate.load(laffi.squad_metric.METRIC_PATH)   # laffi_squad_v2.py in this folder; loads offline
"""
