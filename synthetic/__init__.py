"""The seeded synthetic business (two brands: amoCRM and Bitrix24, an online shop's order files,
and Yandex Direct, VK Ads, Google Ads, Meta) and its ground truth."""

from synthetic.business import GroundTruth, SyntheticBusiness, generate
from synthetic.catalog import CHANNELS, channel_for

__all__ = ["CHANNELS", "GroundTruth", "SyntheticBusiness", "channel_for", "generate"]
