-- One row per ad platform, account, day and campaign up to the as-of date.
-- spend is in the account currency; vat_included says whether it contains VAT.
with

yandex_direct as (

    select * from {{ ref('stg_yandex_direct__campaign_stats') }}

),

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

unioned as (

    select
        report_date as spend_date,
        'yandex_direct' as platform,
        account,
        campaign_id,
        campaign_name,
        impressions,
        clicks,
        cost as spend,
        currency,
        is_vat_included as vat_included,
        -- all Yandex Direct spend is the yandex_direct channel
        'yandex_direct' as channel
    from yandex_direct

),

final as (

    select
        unioned.spend_date,
        unioned.platform,
        unioned.account,
        unioned.campaign_id,
        unioned.campaign_name,
        unioned.impressions,
        unioned.clicks,
        {{ money('unioned.spend') }} as spend,
        unioned.currency,
        unioned.vat_included,
        unioned.channel
    from unioned
    cross join as_of
    where unioned.spend_date <= as_of.as_of_date

)

select * from final
