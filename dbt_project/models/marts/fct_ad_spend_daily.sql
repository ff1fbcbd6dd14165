-- One row per ad platform, account, day and campaign up to the as-of date, over every ad
-- platform and offline spend files (int_ad_spend__unioned).
-- spend is in the account currency; vat_included says whether it contains VAT.
with

ad_spend as (

    select * from {{ ref('int_ad_spend__unioned') }}

),

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

final as (

    select
        ad_spend.spend_date,
        ad_spend.platform,
        ad_spend.account,
        ad_spend.campaign_id,
        ad_spend.campaign_name,
        ad_spend.impressions,
        ad_spend.clicks,
        {{ money('ad_spend.spend') }} as spend,
        ad_spend.currency,
        ad_spend.vat_included,
        ad_spend.channel
    from ad_spend
    cross join as_of
    where ad_spend.spend_date <= as_of.as_of_date

)

select * from final
