"""Predictions: probabilistic customer-lifetime-value models (issue 16).

- ``predictions.btyd``: "buy till you die" models fitted by maximum likelihood with numpy/scipy
  only: BG/NBD (how many repeat purchases, how likely the customer is still "alive") and
  Gamma-Gamma (spend per purchase), after Fader, Hardie & Lee (2005), plus the discounted
  predicted value that combines them.
"""
