-- One row per (account, day, campaign) of Yandex Direct statistics (newest landed version).
-- Dates are Moscow dates (Direct reports in Moscow time); spend is without VAT.
with

source as (

    {{ raw_source('yandex_direct', 'yandex_direct__campaign_stats') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        account,
        record_id,
        {{ json_str('payload', 'Date') }} as report_date,
        {{ json_str('payload', 'CampaignId') }} as campaign_id,
        {{ safe_text(json_str('payload', 'CampaignName')) }} as campaign_name,
        nullif({{ json_str('payload', 'Impressions') }}, '--') as impressions,
        nullif({{ json_str('payload', 'Clicks') }}, '--') as clicks,
        nullif({{ json_str('payload', 'Cost') }}, '--') as cost,
        {{ json_str('payload', '_currency') }} as currency,
        {{ json_str('payload', '_include_vat') }} as include_vat,
        coalesce({{ json_str('payload', '_money_in_micros') }}, 'true') <> 'false'
            as is_money_in_micros,
        extracted_at
    from latest

),

renamed as (

    select
        ----------  ids
        account,
        record_id as campaign_day_id,
        campaign_id,

        ----------  text
        campaign_name,
        currency,

        ----------  numerics
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        -- Direct sends money in micros (x 1,000,000) unless returnMoneyInMicros: false
        case
            when is_money_in_micros
                then cast(cast(cost as numeric(38, 0)) / 1000000 as numeric(18, 2))
            else cast(cost as numeric(18, 2))
        end as cost,

        ----------  booleans
        upper(include_vat) = 'YES' as is_vat_included,

        ----------  dates
        cast(report_date as date) as report_date,

        ----------  lineage
        extracted_at as _extracted_at

    from fields

)

select * from renamed
