-- One row per lead (both CRMs) with its state at the as-of date, read from its last stay in
-- int_lead_stage_history (which ignores events after the cut-off): won (a won stage of an
-- amoCRM pipeline or a Bitrix24 deal category: a Bitrix24 lead's conversion is not a sale),
-- lost (a lost stage, incl. Bitrix24 junk), else open. won_at is when it arrived at the won
-- stage; sales_cycle_days = created_at -> won_at in fractional days.
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

history as (

    select * from {{ ref('int_lead_stage_history') }}

),

all_stages as (

    select * from {{ ref('int_crm__pipeline_stages') }}

),

last_stay as (

    select history.*
    from history
    where not exists (
        select 1 from history as later
        where later.account = history.account
            and later.lead_id = history.lead_id
            and later.stage_seq > history.stage_seq
    )

),

classified as (

    select
        leads.crm,
        leads.account,
        leads.lead_id,
        last_stay.pipeline_id,
        last_stay.status_id,
        case
            when all_stages.is_won and last_stay.pipeline_id <> 'lead' then 'won'
            when all_stages.is_lost then 'lost'
            else 'open'
        end as outcome,
        last_stay.entered_at as status_entered_at,
        leads.created_at,
        leads.created_month,
        leads.amount,
        leads.channel,
        leads.responsible_user_id,
        leads.manager_name
    from leads
    inner join last_stay
        on leads.account = last_stay.account
        and leads.lead_id = last_stay.lead_id
    left join all_stages
        on leads.crm = all_stages.crm
        and last_stay.account = all_stages.account
        and last_stay.pipeline_id = all_stages.pipeline_id
        and last_stay.status_id = all_stages.status_id

),

final as (

    select
        crm,
        account,
        lead_id,
        pipeline_id,
        status_id,
        outcome,
        created_at,
        created_month,
        case when outcome = 'won' then status_entered_at end as won_at,
        case when outcome = 'won' then {{ month_start('status_entered_at') }} end as won_month,
        case when outcome = 'won'
            then {{ days_between('created_at', 'status_entered_at') }} end as sales_cycle_days,
        amount,
        channel,
        responsible_user_id,
        manager_name
    from classified

)

select * from final
