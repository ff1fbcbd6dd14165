-- One row per ad account (platform, source, account, channel): the spend coverage, i.e. the
-- first and last day with spend data, and from which day the account's spend is complete.
-- A platform with a history horizon (var spend_history_days, default VK Ads 366 days) serves
-- nothing older: when the account's first day with data was at that horizon on the day it
-- landed (within 3 days, for time zones and the extractor's one-day margin), the history
-- before it is cut, not absent, and covered_from = that first day; else the account did not
-- spend before its first day and covered_from is null (covered from the start).
-- The marts null CPL, CAC, ROMI, LTV/CAC and payback of a channel-month that starts before
-- covered_from (spend_covered = false): a paid channel with missing spend never reads as free.
{% set horizons = var('spend_history_days', {'vk_ads': 366}) %}
with

spend as (

    select * from {{ ref('int_ad_spend__unioned') }}

),

bounds as (

    select
        platform,
        source,
        account,
        channel,
        min(spend_date) as first_spend_date,
        max(spend_date) as last_spend_date,
        count(distinct spend_date) as days_with_data
    from spend
    group by platform, source, account, channel

),

-- when the first day's rows landed: the horizon is counted back from that day
first_day_landing as (

    select
        bounds.platform,
        bounds.source,
        bounds.account,
        bounds.channel,
        cast(min(spend._extracted_at) as date) as first_day_extracted_on
    from bounds
    inner join spend
        on bounds.platform = spend.platform
        and bounds.source = spend.source
        and bounds.account = spend.account
        and bounds.channel = spend.channel
        and bounds.first_spend_date = spend.spend_date
    group by bounds.platform, bounds.source, bounds.account, bounds.channel

),

with_horizon as (

    select
        bounds.*,
        first_day_landing.first_day_extracted_on,
        {% if horizons %}
        case
            {% for platform, days in horizons.items() %}
            when bounds.source = '{{ platform }}' then {{ days | int }}
            {% endfor %}
        end
        {% else %}
        cast(null as integer)
        {% endif %} as history_days
    from bounds
    inner join first_day_landing
        on bounds.platform = first_day_landing.platform
        and bounds.source = first_day_landing.source
        and bounds.account = first_day_landing.account
        and bounds.channel = first_day_landing.channel

),

final as (

    select
        platform,
        source,
        account,
        channel,
        first_spend_date,
        last_spend_date,
        cast(days_with_data as bigint) as days_with_data,
        first_day_extracted_on,
        cast(history_days as integer) as history_days,
        coalesce(
            history_days is not null
            and first_spend_date <= {{ add_days('first_day_extracted_on', '3 - history_days') }},
            false
        ) as history_truncated
    from with_horizon

)

select
    final.*,
    case when history_truncated then first_spend_date end as covered_from
from final
