-- One row per (account, day, ad plan) of VK Ads statistics (newest landed version), with
-- the ad plan's name from the newest landed ad_plans version (null when not landed).
-- VK Ads reports days in Moscow time (the API default); `spent` is a decimal string in the
-- cabinet currency. Whether it includes VAT is not confirmed, so is_vat_included is null.
with

stats_source as (

    {{ raw_source('vk_ads', 'vk_ads__ad_plan_stats') }}

),

stats as (

    {{ latest_version('stats_source') }}

),

plans_source as (

    {{ raw_source('vk_ads', 'vk_ads__ad_plans') }}

),

plans_latest as (

    {{ latest_version('plans_source') }}

),

plans as (

    select
        account,
        record_id as ad_plan_id,
        {{ safe_text(json_str('payload', 'name')) }} as ad_plan_name,
        {{ json_str('payload', 'status') }} as ad_plan_status
    from plans_latest

),

fields as (

    select
        stats.account,
        stats.record_id,
        substr({{ json_str('stats.payload', 'date') }}, 1, 10) as report_date,
        {{ json_str('stats.payload', 'ad_plan_id') }} as campaign_id,
        coalesce({{ json_str('stats.payload', 'base.shows') }}, '0') as impressions,
        coalesce({{ json_str('stats.payload', 'base.clicks') }}, '0') as clicks,
        coalesce({{ json_str('stats.payload', 'base.spent') }}, '0') as cost,
        {{ json_str('stats.payload', '_currency') }} as currency,
        stats.extracted_at
    from stats

),

renamed as (

    select
        ----------  ids
        fields.account,
        fields.record_id as campaign_day_id,
        fields.campaign_id,

        ----------  text
        plans.ad_plan_name as campaign_name,
        plans.ad_plan_status as campaign_status,
        fields.currency,

        ----------  numerics
        cast(fields.impressions as bigint) as impressions,
        cast(fields.clicks as bigint) as clicks,
        {{ money('fields.cost') }} as cost,

        ----------  booleans
        -- not confirmed by the API notes (ad_apis.md §A2): unknown, not false
        cast(null as boolean) as is_vat_included,

        ----------  dates
        cast(fields.report_date as date) as report_date,

        ----------  lineage
        fields.extracted_at as _extracted_at

    from fields
    left join plans
        on fields.account = plans.account
        and fields.campaign_id = plans.ad_plan_id

)

select * from renamed
