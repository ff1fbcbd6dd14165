-- One row per ad campaign that ever had spend (every platform and offline files): the
-- campaign dimension leads are matched to. campaign_name is the newest name the platform
-- reported (campaigns get renamed; the id stays).
with

ad_spend as (

    select * from {{ ref('int_ad_spend__unioned') }}

),

named as (

    select
        channel,
        platform,
        account,
        campaign_id,
        campaign_name,
        row_number() over (
            partition by channel, platform, account, campaign_id
            order by spend_date desc, campaign_name
        ) as name_rank
    from ad_spend

)

select
    channel,
    platform,
    account,
    campaign_id,
    campaign_name
from named
where name_rank = 1
