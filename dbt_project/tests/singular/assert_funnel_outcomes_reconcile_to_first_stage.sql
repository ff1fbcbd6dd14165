-- Every lead of a pipeline reached its first stage and ends up exactly one way there:
-- dropped off (lost, at its last open stage) + won + still open + moved to another pipeline
-- = reached(first stage), per pipeline; the drop-offs by loss reason add up to the same
-- drop-offs per stage.
with

funnel as (

    select * from {{ ref('fct_funnel_stage_conversion') }}

),

lead_pipelines as (

    select
        account,
        pipeline_id,
        sum(case when pipeline_outcome = 'open' then 1 else 0 end) as leads_open,
        sum(case when pipeline_outcome = 'moved_out' then 1 else 0 end) as leads_moved_out
    from {{ ref('fct_lead_stages') }}
    where stage_order = 1
    group by account, pipeline_id

),

per_pipeline as (

    select
        account,
        pipeline_id,
        max(case when stage_order = 1 then leads_reached end) as reached_first,
        max(case when next_status_id is null then leads_reached end) as leads_won,
        sum(leads_dropped_off) as leads_dropped_off
    from funnel
    group by account, pipeline_id

),

by_reason as (

    select account, pipeline_id, last_open_status_id as status_id, sum(leads_lost) as leads_lost
    from {{ ref('fct_funnel_loss_reasons') }}
    group by account, pipeline_id, last_open_status_id

)

select per_pipeline.account, per_pipeline.pipeline_id, 'outcomes' as check_name
from per_pipeline
left join lead_pipelines
    on per_pipeline.account = lead_pipelines.account
    and per_pipeline.pipeline_id = lead_pipelines.pipeline_id
where per_pipeline.reached_first
    <> per_pipeline.leads_dropped_off + per_pipeline.leads_won
        + coalesce(lead_pipelines.leads_open, 0) + coalesce(lead_pipelines.leads_moved_out, 0)

union all

select funnel.account, funnel.pipeline_id, 'loss reasons at ' || funnel.status_id
from funnel
left join by_reason
    on funnel.account = by_reason.account
    and funnel.pipeline_id = by_reason.pipeline_id
    and funnel.status_id = by_reason.status_id
where funnel.leads_dropped_off <> coalesce(by_reason.leads_lost, 0)
