"""(family module; being written)"""
METRICS: list[type] = []
