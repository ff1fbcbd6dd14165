-- One row per lead x stage of every pipeline the lead has been in (both CRMs), at the as-of
-- date: whether the lead reached the stage, when it was in it, whether it dropped off there.
--   * A lead belongs to a pipeline when it has a stay in one of the pipeline's funnel steps
--     (open stages or won); a converted Bitrix24 lead belongs to the `lead` pipeline and to
--     its deal's category.
--   * reached: the lead's furthest funnel step in the pipeline is this stage or a later one
--     (leads skip stages; won reaches every open stage).
--   * pipeline_outcome: won (reached the pipeline's won step), else the lead's state at the
--     as-of date when its last stay is in this pipeline (lost / open), else moved_out (an
--     amoCRM lead moved on to another pipeline).
--   * Time in stage: the sum of the lead's stays in the stage (entering to leaving it); the
--     won step and stays not left by the as-of date have none.
--   * Drop-off: a lost lead drops off at its last open stage in the pipeline (the stage it
--     was in when it was lost), with its loss reason.
-- History comes from int_lead_stage_history, which already ignores events after the as-of
-- date, so nothing after the cut-off counts.
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

history as (

    select * from {{ ref('int_lead_stage_history') }}

),

funnel_steps as (

    select * from {{ ref('int_pipeline_stages__ordered') }}

),

all_stages as (

    select * from {{ ref('int_crm__pipeline_stages') }}

),

-- every stay with the kind of stage it is in
stays as (

    select
        history.account,
        history.lead_id,
        history.stage_seq,
        history.pipeline_id,
        history.status_id,
        history.entered_at,
        history.left_at,
        coalesce(all_stages.is_won, false) as is_won_stage,
        coalesce(all_stages.is_lost, false) as is_lost_stage,
        funnel_steps.stage_order
    from history
    inner join leads
        on history.account = leads.account
        and history.lead_id = leads.lead_id
    left join all_stages
        on leads.crm = all_stages.crm
        and history.account = all_stages.account
        and history.pipeline_id = all_stages.pipeline_id
        and history.status_id = all_stages.status_id
    left join funnel_steps
        on leads.crm = funnel_steps.crm
        and history.account = funnel_steps.account
        and history.pipeline_id = funnel_steps.pipeline_id
        and history.status_id = funnel_steps.status_id

),

-- the lead's state at the as-of date: its last stay (window maxima, not correlated
-- "no later stay exists" subqueries: PostgreSQL misestimates those into 19k nested loops)
last_stay as (

    select account, lead_id, pipeline_id, status_id, is_won_stage, is_lost_stage
    from (
        select
            stays.*,
            max(stage_seq) over (partition by account, lead_id) as last_seq
        from stays
    ) as numbered
    where stage_seq = last_seq

),

-- the lead's last stay in an open stage of each pipeline (where a lost lead dropped off)
last_open_stay as (

    select account, lead_id, pipeline_id, status_id
    from (
        select
            stays.*,
            max(stage_seq) over (partition by account, lead_id, pipeline_id) as last_open_seq
        from stays
        where stays.stage_order is not null
            and not stays.is_won_stage
    ) as open_stays
    where stage_seq = last_open_seq

),

lead_pipelines as (

    select
        account,
        lead_id,
        pipeline_id,
        max(stage_order) as furthest_stage_order,
        -- the first arrival at the won step
        min(case when is_won_stage then entered_at end) as won_at
    from stays
    where stage_order is not null
    group by account, lead_id, pipeline_id

),

lead_pipeline_outcomes as (

    select
        lead_pipelines.account,
        lead_pipelines.lead_id,
        lead_pipelines.pipeline_id,
        lead_pipelines.furthest_stage_order,
        lead_pipelines.won_at,
        case
            when lead_pipelines.won_at is not null then 'won'
            when last_stay.pipeline_id <> lead_pipelines.pipeline_id then 'moved_out'
            when last_stay.is_lost_stage then 'lost'
            else 'open'
        end as pipeline_outcome,
        last_open_stay.status_id as last_open_status_id
    from lead_pipelines
    inner join last_stay
        on lead_pipelines.account = last_stay.account
        and lead_pipelines.lead_id = last_stay.lead_id
    left join last_open_stay
        on lead_pipelines.account = last_open_stay.account
        and lead_pipelines.lead_id = last_open_stay.lead_id
        and lead_pipelines.pipeline_id = last_open_stay.pipeline_id

),

-- the lead's stays per stage (a stage may be visited more than once)
stage_time as (

    select
        account,
        lead_id,
        pipeline_id,
        status_id,
        min(entered_at) as entered_at,
        max(left_at) as left_at,
        count(*) as stays_count,
        count(left_at) as stays_left,
        -- whole seconds summed exactly, then one division: the same bits in every build
        cast(sum(cast({{ dbt.datediff('entered_at', 'left_at', 'second') }} as bigint))
            as double precision) / 3600.0 as hours_in_stage
    from stays
    where stage_order is not null
    group by account, lead_id, pipeline_id, status_id

),

lead_stages as (

    select
        leads.crm,
        leads.account,
        leads.lead_id,
        funnel_steps.pipeline_id,
        funnel_steps.pipeline_name,
        funnel_steps.status_id,
        funnel_steps.stage_name,
        cast(funnel_steps.stage_order as integer) as stage_order,
        funnel_steps.is_won as is_won_step,
        funnel_steps.next_status_id,
        outcomes.furthest_stage_order >= funnel_steps.stage_order as reached,
        outcomes.furthest_stage_order >= funnel_steps.stage_order + 1
            and funnel_steps.next_status_id is not null as reached_next,
        stage_time.entered_at,
        -- still there at the as-of date: not left
        case when stage_time.stays_left = stage_time.stays_count
            then stage_time.left_at end as left_at,
        case when stage_time.stays_left = stage_time.stays_count and not funnel_steps.is_won
            then stage_time.hours_in_stage end as hours_in_stage,
        outcomes.pipeline_outcome,
        outcomes.pipeline_outcome in ('won', 'lost') as is_closed_in_pipeline,
        outcomes.pipeline_outcome = 'lost'
            and outcomes.last_open_status_id = funnel_steps.status_id as dropped_off_here,
        case when outcomes.pipeline_outcome = 'lost'
                and outcomes.last_open_status_id = funnel_steps.status_id
            then leads.loss_reason_name end as loss_reason_name,
        outcomes.won_at,
        leads.created_at,
        leads.created_month,
        leads.channel,
        leads.responsible_user_id,
        leads.manager_name
    from lead_pipeline_outcomes as outcomes
    inner join leads
        on outcomes.account = leads.account
        and outcomes.lead_id = leads.lead_id
    inner join funnel_steps
        on leads.crm = funnel_steps.crm
        and outcomes.account = funnel_steps.account
        and outcomes.pipeline_id = funnel_steps.pipeline_id
    left join stage_time
        on outcomes.account = stage_time.account
        and outcomes.lead_id = stage_time.lead_id
        and funnel_steps.pipeline_id = stage_time.pipeline_id
        and funnel_steps.status_id = stage_time.status_id

)

select * from lead_stages
