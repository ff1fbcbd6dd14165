-- One row per (platform, account, day, campaign) of ad spend from every ad platform and
-- offline spend files: the per-platform staging models mapped onto one shape (the Fivetran
-- ad_reporting pattern). Spend is in the account currency; vat_included says whether it
-- contains VAT (null = unknown).
--   API platforms: platform = channel = the source (yandex_direct, vk_ads, google_ads,
--   meta_ads).
--   Files: platform = the file's normalised platform; channel = that name when it is one of
--   the four ad channels, else the channel mapping's (int_channel_mapping) row for that
--   utm_source and medium cpc, or else '*' ('vk' -> vk_ads, 'facebook' -> meta_ads, ...),
--   else 'other'.
-- _extracted_at (when the row landed) lets int_ad_spend_coverage tell a history cut by the
-- platform's horizon from an account that did not exist yet.
with

yandex_direct as (

    select * from {{ ref('stg_yandex_direct__campaign_stats') }}

),

vk_ads as (

    select * from {{ ref('stg_vk_ads__ad_plan_stats') }}

),

google_ads as (

    select * from {{ ref('stg_google_ads__campaign_stats') }}

),

meta_ads as (

    select * from {{ ref('stg_meta_ads__campaign_insights') }}

),

files as (

    select * from {{ ref('stg_files__ad_spend') }}

),

-- one channel per paid utm_source: its cpc row, else its any-medium row ('*' source rows
-- are medium-wide and do not name a platform)
platform_channels as (

    select
        utm_source as platform,
        coalesce(
            max(case when utm_medium = 'cpc' then channel end),
            max(case when utm_medium = '*' then channel end)
        ) as channel
    from {{ ref('int_channel_mapping') }}
    where utm_medium in ('cpc', '*') and utm_source <> '*'
    group by utm_source

),

api_platforms as (

    {% for platform in ['yandex_direct', 'vk_ads', 'google_ads', 'meta_ads'] %}
    select
        '{{ platform }}' as source,
        '{{ platform }}' as platform,
        account,
        report_date as spend_date,
        campaign_id,
        campaign_name,
        impressions,
        clicks,
        cost as spend,
        currency,
        is_vat_included as vat_included,
        '{{ platform }}' as channel,
        _extracted_at
    from {{ platform }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

offline as (

    select
        'files' as source,
        files.platform,
        files.account,
        files.report_date as spend_date,
        files.campaign_id,
        files.campaign_name,
        files.impressions,
        files.clicks,
        files.cost as spend,
        files.currency,
        files.is_vat_included as vat_included,
        case
            when files.platform in ('yandex_direct', 'vk_ads', 'google_ads', 'meta_ads')
                then files.platform
            else coalesce(platform_channels.channel, 'other')
        end as channel,
        files._extracted_at
    from files
    left join platform_channels
        on files.platform = platform_channels.platform

),

unioned as (

    select * from api_platforms
    union all
    select * from offline

),

final as (

    select
        spend_date,
        platform,
        source,
        account,
        campaign_id,
        campaign_name,
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        {{ money('spend') }} as spend,
        currency,
        vat_included,
        channel,
        _extracted_at
    from unioned

)

select * from final
