"""Evolutionary cell search (issue [D]): variation operators, selection, storage, executors,
predictor and the generation loop."""
