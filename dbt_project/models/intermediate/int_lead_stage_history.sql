-- One row per stay of a lead in a stage: the stage it was created in (the `before` side of
-- its first status change, or its current stage when it never moved), then the `after`
-- side of every status change, with entered/left times (left_at null = still there).
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

events as (

    select
        events.*,
        row_number() over (
            partition by events.lead_id order by events.changed_at, events.event_id
        ) as event_seq
    from {{ ref('stg_amocrm__lead_status_events') }} as events
    inner join leads
        on events.account = leads.account
        and events.lead_id = leads.lead_id
    where events.changed_at < (select day_after_as_of_date from {{ ref('int_as_of_date') }})

),

initial_stage as (

    select
        leads.account,
        leads.lead_id,
        0 as stage_seq,
        coalesce(first_event.pipeline_id_before, leads.pipeline_id) as pipeline_id,
        coalesce(first_event.status_id_before, leads.status_id) as status_id,
        leads.created_at as entered_at
    from leads
    left join events as first_event
        on leads.account = first_event.account
        and leads.lead_id = first_event.lead_id
        and first_event.event_seq = 1

),

later_stages as (

    select
        account,
        lead_id,
        event_seq as stage_seq,
        pipeline_id_after as pipeline_id,
        status_id_after as status_id,
        changed_at as entered_at
    from events

),

stays as (

    select * from initial_stage
    union all
    select * from later_stages

),

final as (

    select
        account,
        lead_id,
        stage_seq,
        pipeline_id,
        status_id,
        entered_at,
        lead(entered_at) over (partition by account, lead_id order by stage_seq) as left_at
    from stays

)

select * from final
