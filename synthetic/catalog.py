"""Static facts of the synthetic business: ids, names, products, campaigns of the four ad
platforms, channel mapping.

Everything here is constant; the randomness lives in ``synthetic.business``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

ACCOUNT_ID = 31990211
SUBDOMAIN = "voronka-demo"

WON_STATUS_ID = 142
LOST_STATUS_ID = 143

# -- channel mapping used by the marts: (utm_source, utm_medium) -> channel --------------------
# (the seed dbt_project/seeds/channel_mapping.csv; the channel list of metrics.md)
CHANNELS = ("yandex_direct", "vk_ads", "google_ads", "meta_ads", "organic", "referral", "direct",
            "other")
PAID_SOURCES = {
    ("yandex", "cpc"): "yandex_direct",
    ("vk", "cpc"): "vk_ads",
    ("google", "cpc"): "google_ads",
    ("facebook", "cpc"): "meta_ads",
    ("instagram", "cpc"): "meta_ads",
}


def channel_for(utm_source: str | None, utm_medium: str | None) -> str:
    """The marts' channel rule. No UTM at all -> direct; unknown pairs -> other."""
    if utm_source is None and utm_medium is None:
        return "direct"
    if (utm_source, utm_medium) in PAID_SOURCES:
        return PAID_SOURCES[(utm_source, utm_medium)]
    if utm_medium == "organic":
        return "organic"
    if utm_medium == "referral":
        return "referral"
    return "other"


# -- amoCRM custom field ids --------------------------------------------------------------------
FIELD_PHONE = 551201
FIELD_EMAIL = 551203
# marketing consent (SOURCES_CONTRACT.md, consent): an amoCRM checkbox field found by its
# field_code, a do-not-contact tag; in Bitrix24 a Y/N user field and the contact's EXPORT flag
FIELD_CONSENT = 551209
CONSENT_FIELD_CODE = "MARKETING_CONSENT"
DNC_TAG = "do_not_contact"
DNC_TAG_ID = 90411
B24_CONSENT_FIELD = "UF_CRM_MARKETING_CONSENT"
# shares of contacts: consent given / withdrawn (the rest: never asked); do-not-contact apart
CONSENT_GIVEN_P = 0.72
CONSENT_WITHDRAWN_P = 0.04
DO_NOT_CONTACT_P = 0.03
# birthdays (audiences: birthday_within_days): an amoCRM user-created field of type "birthday"
# (no field_code; found by its type), Bitrix24's standard BIRTHDATE; a contact knows its
# person's birthday with this share
FIELD_BIRTHDAY = 551213
BIRTHDAY_KNOWN_P = 0.55
ENUM_PHONE_MOB = 880311
ENUM_PHONE_WORK = 880305
ENUM_EMAIL_WORK = 880317
ENUM_EMAIL_PRIV = 880319
FIELD_UTM = {"UTM_SOURCE": 1204417, "UTM_MEDIUM": 1204419, "UTM_CAMPAIGN": 1204421}
TAG_REPEAT = {"id": 40211, "name": "повторная покупка", "color": None}

# -- pipelines ----------------------------------------------------------------------------------
MAIN_PIPELINE_ID = 7310455
REPEAT_PIPELINE_ID = 7310511

# (id, name, sort, type, color, is_editable)
MAIN_STATUSES = [
    (61880209, "Неразобранное", 10, 1, "#c1c1c1", False),
    (61880213, "Квалификация", 20, 0, "#99ccff", True),
    (61880217, "Предложение отправлено", 30, 0, "#ffff99", True),
    (61880221, "Счёт выставлен", 40, 0, "#ffcc66", True),
    (WON_STATUS_ID, "Успешно реализовано", 10000, 0, "#CCFF66", False),
    (LOST_STATUS_ID, "Закрыто и не реализовано", 11000, 0, "#D5D8DB", False),
]
REPEAT_STATUSES = [
    (61880301, "Неразобранное", 10, 1, "#c1c1c1", False),
    (61880305, "Предложение отправлено", 20, 0, "#ffff99", True),
    (WON_STATUS_ID, "Успешно реализовано", 10000, 0, "#CCFF66", False),
    (LOST_STATUS_ID, "Закрыто и не реализовано", 11000, 0, "#D5D8DB", False),
]
# open stages in order (first = the "incoming" status, type 1)
MAIN_OPEN = [s[0] for s in MAIN_STATUSES if s[0] not in (WON_STATUS_ID, LOST_STATUS_ID)]
REPEAT_OPEN = [s[0] for s in REPEAT_STATUSES if s[0] not in (WON_STATUS_ID, LOST_STATUS_ID)]

# -- loss reasons -------------------------------------------------------------------------------
LOSS_NOT_TARGET = 5120301
LOSS_NO_ANSWER = 5120305
LOSS_EXPENSIVE = 5120309
LOSS_COMPETITOR = 5120313
LOSS_POSTPONED = 5120317
LOSS_REASONS = [
    (LOSS_NOT_TARGET, "Не целевой", 1),
    (LOSS_NO_ANSWER, "Не дозвонились", 2),
    (LOSS_EXPENSIVE, "Дорого", 3),
    (LOSS_COMPETITOR, "Выбрал конкурента", 4),
    (LOSS_POSTPONED, "Отложил покупку", 5),
]
# loss reasons (with weights) by the open stage the lead was lost from (index in the open list)
LOSS_BY_STAGE = {
    0: [(LOSS_NOT_TARGET, 5), (LOSS_NO_ANSWER, 5)],
    1: [(LOSS_NOT_TARGET, 3), (LOSS_NO_ANSWER, 3), (LOSS_POSTPONED, 2), (LOSS_EXPENSIVE, 1)],
    2: [(LOSS_EXPENSIVE, 5), (LOSS_COMPETITOR, 3), (LOSS_POSTPONED, 2)],
    3: [(LOSS_COMPETITOR, 4), (LOSS_EXPENSIVE, 3), (LOSS_POSTPONED, 2)],
}


# -- managers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manager:
    id: int
    name: str
    email: str
    skill: float  # multiplies the win probability
    weight: float  # share of incoming leads
    joined: date | None = None
    left: date | None = None
    is_admin: bool = False

    def active_on(self, d: date) -> bool:
        return (self.joined is None or d >= self.joined) and (self.left is None or d <= self.left)


MANAGERS = [
    Manager(8812031, "Анна Смирнова", "anna.smirnova@voronka-demo.ru", 1.25, 0.6, is_admin=True),
    Manager(8812044, "Дмитрий Кузнецов", "d.kuznetsov@voronka-demo.ru", 1.0, 1.0),
    Manager(8812057, "Елена Попова", "e.popova@voronka-demo.ru", 1.12, 1.0),
    Manager(8812063, "Игорь Васильев", "i.vasiliev@voronka-demo.ru", 0.72, 1.0,
            left=date(2025, 8, 31)),
    Manager(8812078, "Ольга Соколова", "o.sokolova@voronka-demo.ru", 0.95, 1.0),
    Manager(8812085, "Павел Морозов", "p.morozov@voronka-demo.ru", 0.85, 1.0,
            joined=date(2025, 6, 2)),
    Manager(8812091, "Мария Волкова", "m.volkova@voronka-demo.ru", 1.05, 0.9,
            joined=date(2025, 10, 1)),
]


# -- products -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    code: str
    name: str
    price: int  # RUB, list price before the price rise
    cycle_days: int  # typical repurchase cycle
    repeat_p: float  # base probability of a repeat purchase after an order
    win_factor: float  # multiplies the win probability (expensive products close less often)


PRODUCTS = [
    Product("start", "Онлайн-курс «Старт»", 9_900, 90, 0.75, 1.0),
    Product("pro", "Курс «Профи»", 34_900, 180, 0.6, 0.7),
    Product("consult", "Консультация эксперта", 4_500, 45, 0.78, 1.15),
]
PRODUCT_BY_CODE = {p.code: p for p in PRODUCTS}
PRICE_RISE_DATE = date(2025, 9, 1)
PRICE_RISE = 1.1
# next product after an order of product X: weights over PRODUCTS order
NEXT_PRODUCT = {"start": (6, 3, 1), "pro": (1, 6, 3), "consult": (3, 2, 5)}


# -- ad campaigns (Yandex Direct campaigns, VK Ads ad plans, Google Ads and Meta campaigns) ------
@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    budget: float  # RUB/day without VAT at growth 1.0
    cpc: float  # average cost per click
    ctr: float  # clicks / impressions
    cpl: float  # cost per lead (drives lead volume)
    retargeting: bool = False  # where returning people come back through


CAMPAIGNS = [
    Campaign(70012345, "Поиск_Бренд", 450.0, 18.0, 0.09, 1450.0),
    Campaign(70012346, "Поиск_Курсы_Общие", 1300.0, 42.0, 0.05, 3500.0),
    Campaign(70012347, "РСЯ_Ретаргетинг", 700.0, 11.0, 0.012, 2600.0, retargeting=True),
    Campaign(70012348, "РСЯ_Интересы", 1000.0, 7.5, 0.006, 5200.0),
]
VK_AD_PLANS = [  # VK Ads ad plans (utm_source=vk, utm_campaign=<ad plan id>)
    Campaign(20865519, "ВК_Лукалайк_Покупатели", 280.0, 14.0, 0.008, 1400.0),
    Campaign(20865527, "ВК_Ретаргетинг_Сайт", 180.0, 9.0, 0.011, 1000.0, retargeting=True),
    Campaign(20865534, "ВК_Интересы_Обучение", 300.0, 11.0, 0.005, 2400.0),
]
GOOGLE_CAMPAIGNS = [  # Google Ads campaigns (utm_source=google)
    Campaign(21034567801, "Search_Brand_RU", 200.0, 25.0, 0.08, 1600.0),
    Campaign(21034567815, "Search_Courses_Generic", 500.0, 55.0, 0.04, 5000.0),
    Campaign(21034567829, "PMax_Courses", 300.0, 15.0, 0.01, 4500.0),
]
META_CAMPAIGNS = [  # Meta campaigns (utm_source=facebook|instagram)
    Campaign(120212345678901, "Prospecting_RU_Courses", 450.0, 12.0, 0.009, 3600.0),
    Campaign(120212345678915, "Retargeting_Site_Visitors", 200.0, 8.0, 0.015, 2000.0,
             retargeting=True),
]
# paid channel -> its campaigns (Yandex Direct first: its rows are generated first each day)
AD_CAMPAIGNS = {
    "yandex_direct": CAMPAIGNS,
    "vk_ads": VK_AD_PLANS,
    "google_ads": GOOGLE_CAMPAIGNS,
    "meta_ads": META_CAMPAIGNS,
}
# paid channel -> the row keys its emulator takes: (id, name, impressions, money); Meta ids are
# strings in its rows (as the Insights API returns them), the others integers
AD_ROW_KEYS = {
    "yandex_direct": ("campaign_id", "campaign_name", "impressions", "cost"),
    "vk_ads": ("ad_plan_id", "ad_plan_name", "shows", "spent"),
    "google_ads": ("campaign_id", "campaign_name", "impressions", "cost"),
    "meta_ads": ("campaign_id", "campaign_name", "impressions", "spend"),
}

# -- people -------------------------------------------------------------------------------------
MALE_FIRST = [
    "Александр", "Алексей", "Андрей", "Артём", "Борис", "Вадим", "Виктор", "Владимир", "Глеб",
    "Денис", "Евгений", "Егор", "Иван", "Кирилл", "Константин", "Максим", "Михаил", "Никита",
    "Николай", "Олег", "Роман", "Сергей", "Станислав", "Тимур", "Фёдор", "Юрий", "Ярослав",
]
FEMALE_FIRST = [
    "Алина", "Анастасия", "Анна", "Валерия", "Вера", "Дарья", "Екатерина", "Елена", "Жанна",
    "Ирина", "Ксения", "Лариса", "Любовь", "Марина", "Мария", "Надежда", "Наталья", "Ольга",
    "Полина", "Светлана", "София", "Татьяна", "Ульяна", "Юлия", "Яна",
]
SURNAMES = [
    "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов",
    "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров",
    "Павлов", "Козлов", "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин",
    "Захаров", "Зайцев", "Соловьёв", "Борисов", "Яковлев", "Григорьев", "Романов", "Воробьёв",
    "Сергеев", "Кузьмин", "Фролов", "Александров", "Дмитриев", "Королёв", "Гусев", "Киселёв",
    "Ильин", "Максимов", "Поляков", "Сорокин", "Виноградов", "Ковалёв", "Белов", "Медведев",
    "Антонов", "Тарасов", "Жуков", "Баранов", "Филиппов", "Комаров", "Давыдов", "Беляев",
]
EMAIL_DOMAINS = [
    ("gmail.com", 5), ("yandex.ru", 6), ("mail.ru", 5), ("bk.ru", 1), ("inbox.ru", 1),
    ("list.ru", 1), ("outlook.com", 1), ("ya.ru", 1),
]
JUNK_PHONES = ["позвонить после 18", "12", "нет", "call me", "-", "+7 916", "123"]

_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
}


def translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


# -- amoCRM: B2B companies and the buyer funnel -------------------------------------------------
COMPANY_FORMS = ["ООО", "ООО", "АО", "ИП"]
COMPANY_NAMES = [
    "Вектор", "Альфа-Софт", "Северный ветер", "ТехноПром", "Меридиан", "Горизонт", "Статус",
    "Лидер-Групп", "Эталон", "Прогресс", "Сфера", "Импульс", "Ростверк", "Квадрат", "Орбита",
]
# buyer-funnel statuses: (id, name, sort, is_default, color, type); types per crm_apis.md §1.9:
# 0 regular, 1 expected purchase, 2 did not purchase, 3 closed, 4 recently purchased
CUSTOMER_STATUSES = [
    (4401001, "Недавно купили", 1, False, "#ccff66", 4),
    (4401005, "Ожидается покупка", 2, False, "#99ccff", 1),
    (4401009, "Постоянные клиенты", 3, True, "#fffeb2", 0),
    (4401013, "Не купили", 4, False, "#ffcccc", 2),
    (4401017, "Закрытые", 5, False, "#d5d8db", 3),
]
CUSTOMER_STATUS_BY_TYPE = {stype: sid for sid, _n, _s, _d, _c, stype in CUSTOMER_STATUSES}
# a manager sets some buyers' next purchase date by hand when recording the purchase (or
# opening the buyer) instead of last purchase + periodicity: share, and the shift range in days
BUYER_NEXT_DATE_SET_P = 0.25
BUYER_NEXT_DATE_SHIFT_DAYS = (-14, 45)

# -- the second brand: Bitrix24 portal ----------------------------------------------------------
B24_PORTAL = "voronka.bitrix24.ru"  # the portal host is the Bitrix24 `account`
B24_MANAGERS = [
    Manager(1, "Сергей Орлов", "s.orlov@speakup-demo.ru", 1.1, 0.4, is_admin=True),
    Manager(12, "Татьяна Белова", "t.belova@speakup-demo.ru", 1.05, 1.0),
    Manager(15, "Кирилл Зайцев", "k.zaitsev@speakup-demo.ru", 0.9, 1.0,
            left=date(2025, 12, 31)),
    Manager(19, "Алина Фролова", "a.frolova@speakup-demo.ru", 1.0, 1.0,
            joined=date(2025, 11, 10)),
]
B24_POSITIONS = {1: "Руководитель отдела продаж"}  # others: "Менеджер по продажам"
B24_PRODUCTS = [
    Product("speak", "Курс «Разговорный английский»", 14_900, 120, 0.55, 1.0),
    Product("business", "Интенсив «Бизнес-английский»", 24_900, 150, 0.45, 0.85),
    Product("club", "Разговорный клуб, абонемент", 3_900, 30, 0.7, 1.2),
]
B24_NEXT_PRODUCT = {"speak": (3, 3, 4), "business": (1, 4, 5), "club": (2, 1, 7)}
# lead statuses (crm.status.list ENTITY_ID=STATUS): (STATUS_ID, NAME, SORT, SEMANTICS, COLOR)
B24_LEAD_STATUSES = [
    ("NEW", "Не обработан", 10, None, "#39A8EF"),
    ("IN_PROCESS", "В работе", 20, None, "#2FC6F6"),
    ("PROCESSED", "Обработан", 30, None, "#55D0E0"),
    ("CONVERTED", "Качественный лид", 40, "S", "#7BD500"),
    ("JUNK", "Некачественный лид", 50, "F", "#FF5752"),
    ("UC_NOANSWER", "Не дозвонились", 55, "F", "#FF8C8C"),  # a custom failure status
]
# deal stages by category: (STATUS_ID, NAME, SORT, SEMANTICS, COLOR)
B24_DEAL_STAGES = {
    0: [
        ("NEW", "Новая", 10, None, "#39A8EF"),
        ("PREPARATION", "Подготовка документов", 20, None, "#2FC6F6"),
        ("PREPAYMENT_INVOICE", "Счёт на предоплату", 30, None, "#55D0E0"),
        ("EXECUTING", "В работе", 40, None, "#47E4C2"),
        ("WON", "Сделка успешна", 60, "S", "#7BD500"),
        ("LOSE", "Сделка провалена", 70, "F", "#FF5752"),
        ("UC_PRICE", "Не устроила цена", 75, "F", "#FF8C8C"),  # a custom failure stage
        ("APOLOGY", "Анализ причины провала", 80, "F", "#FF5752"),
    ],
    1: [
        ("C1:NEW", "Новая", 10, None, "#39A8EF"),
        ("C1:PREPARATION", "Согласование", 20, None, "#2FC6F6"),
        ("C1:WON", "Оплачено", 60, "S", "#7BD500"),
        ("C1:LOSE", "Отказ", 70, "F", "#FF5752"),
        ("C1:UC_NOTIME", "Нет времени", 75, "F", "#FF8C8C"),
        ("C1:APOLOGY", "Анализ причины провала", 80, "F", "#FF5752"),
    ],
}
# Where a lost lead/deal ends: several F-semantic stages per funnel (Bitrix24 has LOSE and
# APOLOGY, "analyse why it failed", plus custom ones); the walk loses into the first, then a
# separate RNG stream moves it to one of these by weight (synthetic.bitrix24).
B24_LOSS_WEIGHTS = {
    "lead": {"JUNK": 0.7, "UC_NOANSWER": 0.3},
    0: {"LOSE": 0.5, "UC_PRICE": 0.3, "APOLOGY": 0.2},
    1: {"C1:LOSE": 0.5, "C1:UC_NOTIME": 0.3, "C1:APOLOGY": 0.2},
}
# a string user field on deals: the manager types why a deal failed while analysing it (a
# deal in an APOLOGY stage), sometimes; the warehouse reads it when the dbt var
# `bitrix24_loss_reason_field` names it
B24_LOSS_REASON_FIELD = "UF_CRM_LOSS_REASON"
B24_LOSS_REASON_TEXTS = ("Выбрали конкурента", "Пропала потребность", "Не устроили сроки")
B24_LOSS_REASON_FILLED_P = 0.6
B24_CATEGORIES = [(0, "Продажи", 100, True), (1, "Повторные продажи", 200, False)]
# channel -> SOURCE_ID of a lead/deal (repeat deals: REPEAT_SALE)
B24_SOURCE_ID = {
    "yandex_direct": "ADVERTISING", "vk_ads": "ADVERTISING", "google_ads": "ADVERTISING",
    "meta_ads": "ADVERTISING", "organic": "WEB", "referral": "RECOMMENDATION", "direct": "CALL",
    "other": "OTHER",
}

# -- the second brand's online shop (orders files) ----------------------------------------------
# (product, price RUB, weight)
SHOP_PRODUCTS = [
    ("Рабочая тетрадь «Разговорный английский»", 990, 5),
    ("Видеокурс «Произношение»", 2_490, 3),
    ("Разговорный клуб, 4 встречи", 1_990, 4),
    ("Подарочный сертификат 5000", 5_000, 1),
]
SHOP_MARGIN = 0.62  # gross margin share of the shop's products
