-- One row per touch with an ad channel — a lead, or an orders-file row (a shop buyer's first
-- touch when they never had a lead) — with the ad campaign its UTM tags name. Ad platforms fill
-- utm_campaign from a URL macro with the campaign id (Direct and VK {campaign_id}, Google
-- {campaignid}, Meta campaign.id) or, in hand-made links, with the campaign name; so a touch
-- matches a campaign of its own channel whose id, else whose name, equals utm_campaign
-- (case-insensitive). No match (or no utm_campaign): campaign columns null.
with

ad_channels as (

    select distinct channel from {{ ref('int_ad_campaigns') }}

),

lead_touches as (

    select
        'lead' as touch_kind,
        lead_id as touch_id,
        channel,
        utm_campaign
    from {{ ref('int_leads__enriched') }}

),

file_orders as (

    select
        'files_' || order_record_id as touch_id,
        utm_source,
        utm_medium,
        utm_campaign
    from {{ ref('stg_files__orders') }}

),

file_order_channels as (

    {{ select_channel('file_orders', ['touch_id', 'utm_campaign']) }}

),

touches as (

    select touch_kind, touch_id, channel, utm_campaign from lead_touches
    union all
    select 'file_order', touch_id, channel, utm_campaign from file_order_channels

),

paid_touches as (

    select * from touches
    where channel in (select channel from ad_channels)

),

campaigns as (

    select * from {{ ref('int_ad_campaigns') }}

),

candidates as (

    select
        paid_touches.touch_kind,
        paid_touches.touch_id,
        campaigns.platform,
        campaigns.account,
        campaigns.campaign_id,
        campaigns.campaign_name,
        case
            when lower(paid_touches.utm_campaign) = lower(campaigns.campaign_id) then 'campaign_id'
            else 'campaign_name'
        end as matched_on
    from paid_touches
    inner join campaigns
        on paid_touches.channel = campaigns.channel
        and (lower(paid_touches.utm_campaign) = lower(campaigns.campaign_id)
             or lower(paid_touches.utm_campaign) = lower(campaigns.campaign_name))

),

ranked as (

    select
        candidates.*,
        row_number() over (
            partition by touch_kind, touch_id
            order by
                case matched_on when 'campaign_id' then 0 else 1 end,
                platform, account, campaign_id
        ) as match_rank
    from candidates

),

final as (

    select
        paid_touches.touch_kind,
        paid_touches.touch_id,
        paid_touches.channel,
        paid_touches.utm_campaign,
        ranked.platform,
        ranked.account,
        ranked.campaign_id,
        ranked.campaign_name,
        ranked.matched_on
    from paid_touches
    left join ranked
        on paid_touches.touch_kind = ranked.touch_kind
        and paid_touches.touch_id = ranked.touch_id
        and ranked.match_rank = 1

)

select * from final
