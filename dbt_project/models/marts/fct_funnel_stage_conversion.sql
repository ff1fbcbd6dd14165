-- One row per pipeline funnel step (amoCRM pipelines, Bitrix24 deal categories and the
-- Bitrix24 lead statuses): the open stages in the pipeline's order, then won.
-- A lead reached stage s when its history contains s or any later open stage, or it was
-- won (leads skip stages). conversion_to_next = reached(next) / reached(s);
-- win_rate = won / reached(first stage), the same on every row of a pipeline.
with

stages as (

    select * from {{ ref('int_pipeline_stages__ordered') }}

),

history as (

    select account, lead_id, pipeline_id, status_id
    from {{ ref('int_lead_stage_history') }}
    union
    -- the current stage, in case the event history is incomplete
    select account, lead_id, pipeline_id, status_id
    from {{ ref('int_leads__enriched') }}

),

lead_progress as (

    select
        history.account,
        history.lead_id,
        history.pipeline_id,
        max(stages.stage_order) as furthest_stage_order
    from history
    inner join stages
        on history.account = stages.account
        and history.pipeline_id = stages.pipeline_id
        and history.status_id = stages.status_id
    group by history.account, history.lead_id, history.pipeline_id

),

reached as (

    select
        stages.account,
        stages.pipeline_id,
        stages.status_id,
        count(lead_progress.lead_id) as leads_reached
    from stages
    left join lead_progress
        on stages.account = lead_progress.account
        and stages.pipeline_id = lead_progress.pipeline_id
        and lead_progress.furthest_stage_order >= stages.stage_order
    group by stages.account, stages.pipeline_id, stages.status_id

),

joined as (

    select
        stages.crm,
        stages.account,
        stages.pipeline_id,
        stages.pipeline_name,
        stages.status_id,
        stages.stage_name,
        stages.stage_order,
        reached.leads_reached,
        stages.next_status_id,
        next_reached.leads_reached as leads_reached_next,
        max(case when stages.stage_order = 1 then reached.leads_reached end) over (
            partition by stages.account, stages.pipeline_id
        ) as leads_reached_first,
        max(case when stages.is_won then reached.leads_reached end) over (
            partition by stages.account, stages.pipeline_id
        ) as leads_won
    from stages
    inner join reached
        on stages.account = reached.account
        and stages.pipeline_id = reached.pipeline_id
        and stages.status_id = reached.status_id
    left join reached as next_reached
        on stages.account = next_reached.account
        and stages.pipeline_id = next_reached.pipeline_id
        and stages.next_status_id = next_reached.status_id

),

final as (

    select
        crm,
        account,
        pipeline_id,
        pipeline_name,
        status_id,
        stage_name,
        cast(stage_order as integer) as stage_order,
        cast(leads_reached as bigint) as leads_reached,
        next_status_id,
        cast(leads_reached_next as bigint) as leads_reached_next,
        {{ safe_divide('leads_reached_next', 'leads_reached') }} as conversion_to_next,
        {{ safe_divide('leads_won', 'leads_reached_first') }} as win_rate
    from joined

)

select * from final
